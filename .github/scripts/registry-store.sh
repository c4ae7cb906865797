#!/usr/bin/env bash
# Keep the MLflow model registry across workflow runs (mlops.yml, retrain.yml).
#
# Two stores, chosen by configuration:
#   - remote: the secret MLFLOW_TRACKING_URI is set (an MLflow server; credentials in
#     MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN). The server keeps the registry;
#     this script has nothing to do.
#   - release (default): the SQLite registry directory $NEONSIGN_REGISTRY (database + model
#     artifacts) is a tarball, registry.tar.gz, attached to the GitHub release $REGISTRY_RELEASE
#     (a pre-release, never "latest"). Release assets do not expire (artifacts do, caches are
#     evicted). $NEONSIGN_REGISTRY is the same absolute path in every job (/tmp/...), because
#     the database records artifact locations as absolute file:// URIs.
#
#   registry-store.sh restore        # unpack the release's registry (a first run starts empty)
#   registry-store.sh pack DIR       # tar the registry directory into DIR/registry.tar.gz
#   registry-store.sh publish DIR    # attach DIR/registry.tar.gz to the release (created on first use)
#
# restore and publish use the GitHub CLI with GH_TOKEN and GH_REPO from the environment;
# publish needs `contents: write` and runs only from the default branch (mlops.yml).
set -euo pipefail
: "${NEONSIGN_REGISTRY:?set NEONSIGN_REGISTRY to the registry directory}"
release="${REGISTRY_RELEASE:-mlops-registry}"
asset=registry.tar.gz

case "${1:-}" in
restore)
    if [ -n "${MLFLOW_TRACKING_URI:-}" ]; then
        echo "registry: remote MLflow server (MLFLOW_TRACKING_URI); nothing to restore"
        exit 0
    fi
    tmp="$(mktemp -d)"
    if gh release download "$release" --pattern "$asset" --dir "$tmp"; then
        mkdir -p "$(dirname "$NEONSIGN_REGISTRY")"
        rm -rf "$NEONSIGN_REGISTRY"
        tar -xzf "$tmp/$asset" -C "$(dirname "$NEONSIGN_REGISTRY")"
        echo "registry: restored $NEONSIGN_REGISTRY from release $release"
    elif gh release view "$release" >/dev/null 2>&1; then
        echo "::error::release $release exists but its $asset could not be downloaded"
        exit 1
    else
        echo "::notice::no release $release yet: the registry starts empty (first run)"
        mkdir -p "$NEONSIGN_REGISTRY"
    fi
    rm -rf "$tmp"
    ;;
pack)
    out="${2:?usage: registry-store.sh pack DIR}/$asset"
    mkdir -p "$2"
    tar -czf "$out" -C "$(dirname "$NEONSIGN_REGISTRY")" "$(basename "$NEONSIGN_REGISTRY")"
    echo "registry: packed $NEONSIGN_REGISTRY into $out ($(du -h "$out" | cut -f1))"
    ;;
publish)
    file="${2:?usage: registry-store.sh publish DIR}/$asset"
    [ -f "$file" ] || { echo "registry: $file not found" >&2; exit 1; }
    if ! gh release view "$release" >/dev/null 2>&1; then
        gh release create "$release" --prerelease --latest=false --target "${GITHUB_SHA:?}" \
            --title "MLOps model registry" \
            --notes "The MLflow model registry of mlops.yml (SQLite + model artifacts), replaced by every run on the default branch. Not a software release."
    fi
    gh release upload "$release" "$file" --clobber
    echo "registry: uploaded $asset to release $release"
    ;;
*)
    echo "usage: registry-store.sh restore | pack DIR | publish DIR" >&2
    exit 2
    ;;
esac
