output "objects" {
  description = "The Kubernetes objects Terraform manages (group_kind/namespace/name)."
  value       = sort(concat(keys(kustomization_resource.p0), keys(kustomization_resource.p1), keys(kustomization_resource.p2)))
}

output "victoria_metrics_url" {
  description = "VictoriaMetrics inside the cluster (remote write: /api/v1/write)."
  value       = "http://victoria-metrics.monitoring.svc:8428"
}
