# What the seed's Step 2 created: the monitoring namespace, VictoriaMetrics (with its scrape configuration),
# vmalert (with deploy/vmalert/rules.yml), PostgreSQL and Jaeger, with their ConfigMaps and Services.
#
# The objects are the manifests of deploy/k8s/infra, built with kustomize by the kbst/kustomization provider:
# Terraform, `kubectl apply -k deploy/k8s/infra` and the validation in scripts/check-deploy.sh all use the same
# definitions, so there is one way to describe each backing system.

provider "kustomization" {
  kubeconfig_path = pathexpand(var.kubeconfig_path)
  context         = var.kube_context
}

data "kustomization_build" "infra" {
  path = "${path.module}/../k8s/infra"
}

locals {
  infra = data.kustomization_build.infra
}

# Namespaces (and CRDs, if any) first, then everything else, then webhooks: the provider's ordering by priority.
resource "kustomization_resource" "p0" {
  for_each = local.infra.ids_prio[0]
  manifest = local.infra.manifests[each.value]
}

resource "kustomization_resource" "p1" {
  for_each = local.infra.ids_prio[1]
  manifest = local.infra.manifests[each.value]

  # Wait for the StatefulSets and Deployments to be ready, so `terraform apply` returns with the stack up.
  wait = true
  timeouts {
    create = "10m"
    update = "10m"
  }

  depends_on = [kustomization_resource.p0]
}

resource "kustomization_resource" "p2" {
  for_each = local.infra.ids_prio[2]
  manifest = local.infra.manifests[each.value]

  depends_on = [kustomization_resource.p1]
}
