#!/usr/bin/env bash
# The development credentials as the Secrets and ConfigMap the manifests mount (docs/deploy.md,
# "Secrets"): each service's certificate, the token issuer's public keys, the drop-off code
# pepper. Certificates and keys come from tools.pki (var/pki, the same as `make run`'s), so
# `python -m tools.pki token ...` mints tokens the cluster accepts. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
NAMESPACE="${NAMESPACE:-greenpartners}"
PKI=var/pki

uv run --frozen python -m tools.pki --dir "$PKI" init
read -r issuer audience < <(uv run --frozen python -c \
  'from tools.pki import DEVELOPMENT_AUDIENCE as a, DEVELOPMENT_ISSUER as i; print(i, a)')

kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"
apply() { kubectl --namespace "$NAMESPACE" apply -f -; }

for service in partner-registry locker-hubs fleet-telemetry emissions-ledger; do
  kubectl --namespace "$NAMESPACE" create secret generic "$service-tls" --type=kubernetes.io/tls \
    --from-file=tls.crt="$PKI/$service.crt" --from-file=tls.key="$PKI/$service.key" \
    --from-file=ca.crt="$PKI/ca.crt" --dry-run=client -o yaml | apply
done
kubectl --namespace "$NAMESPACE" create configmap greenpartners-auth \
  --from-file=jwks.json="$PKI/jwks.json" --from-literal=issuer="$issuer" \
  --from-literal=audience="$audience" --dry-run=client -o yaml | apply
# A new pepper would invalidate the codes already issued: created once, then kept.
if ! kubectl --namespace "$NAMESPACE" get secret locker-hubs-code-pepper >/dev/null 2>&1; then
  kubectl --namespace "$NAMESPACE" create secret generic locker-hubs-code-pepper \
    --from-literal=pepper="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
fi
