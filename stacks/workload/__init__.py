"""The Kubernetes workload every cloud runs: one implementation, fed each cluster's kubeconfig."""
