"""Everything decided before a pod is rented: the recipe's data files, the Hub checks, the GPU catalog and its
throughput table, the estimate for each offer, this machine's CPU probe, and the plan shown to the user."""
