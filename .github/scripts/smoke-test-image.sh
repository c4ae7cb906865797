#!/usr/bin/env bash
# Smoke-test a serving image with Docker, the way it is deployed and called:
#   - the image's user is not root;
#   - `neonsign predict` inside the image on IMG gives the expected answer (expected.json);
#   - `docker run -d -p 127.0.0.1:PORT:8000` of the image's own CMD (with MODEL_DIR mounted
#     read-only at /models/current, or the model baked into the image when MODEL_DIR is "-");
#   - .github/scripts/smoke_check.py: /healthz, /readyz, `curl -F file=@img.png .../predict/`
#     equal to `neonsign predict`, model_version = the card's weights_sha256.
# The container's log is printed when a check fails; the container is always removed.
#
# Usage: smoke-test-image.sh IMAGE MODEL_DIR|- IMG [PORT]
# Appends its table to $GITHUB_STEP_SUMMARY when that is set.
set -euo pipefail
image="$1" model="$2" img="$3" port="${4:-8000}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
name="neonsign-smoke-$$"
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

user="$(docker image inspect --format '{{.Config.User}}' "$image")"
case "$user" in
    "" | root | 0 | 0:*) echo "::error::$image runs as root (USER '$user')"; exit 1 ;;
esac
echo "image user: $user"

cp "$img" "$work/$(basename "$img")"
chmod 0755 "$work" && chmod 0644 "$work/$(basename "$img")"
mount=()
if [ "$model" = "-" ]; then
    docker run --rm --entrypoint cat "$image" /models/current/model_card.json > "$work/model_card.json"
else
    mount=(-v "$(cd "$model" && pwd):/models/current:ro")
    cp "$model/model_card.json" "$work/model_card.json"
fi

# What the tested code path says for this file and model (inside the image, as its user).
docker run --rm "${mount[@]}" -v "$work:/in:ro" "$image" \
    neonsign predict --model /models/current "/in/$(basename "$img")" --format json --top-k 1 --quiet \
    > "$work/expected.json"

docker run -d --name "$name" -p "127.0.0.1:$port:8000" "${mount[@]}" "$image" >/dev/null
if ! python3 "$here/smoke_check.py" --url "http://127.0.0.1:$port" --image "$work/$(basename "$img")" \
        --card "$work/model_card.json" --expect "$work/expected.json" \
        --title "Container smoke test: $image ($(docker image inspect --format '{{.Os}}/{{.Architecture}}' "$image"))" \
        ${GITHUB_STEP_SUMMARY:+--summary "$GITHUB_STEP_SUMMARY"}; then
    echo "== docker logs $name"
    docker logs "$name" 2>&1 | tail -n 100
    exit 1
fi
