# The manager's image, for those with a Docker engine: `make docker-build`.
#
# `make image` builds the same image without Docker and without pulling a base image (the
# daemonless path, hack/release): the static binaries alone in one layer (/manager and
# /dingtalk-token-proxy, which a sidecar runs), user 65532:65532, entrypoint /manager, as OCI
# tarballs for linux/amd64 and linux/arm64. Keep the two equivalent.

# Base images are pinned by digest, so that a rebuild uses the very images it was reviewed with
# (a tag such as golang:1.26 moves with every patch release and base update). Both digests were
# taken from a public Dockerfile pinning the same tags (attune-io/attune, Dockerfile, commit
# 245c9b4a), not computed here. To update them, resolve the tags anew and review the change:
#   crane digest golang:1.26.5          (or: docker buildx imagetools inspect golang:1.26.5)
#   crane digest gcr.io/distroless/static:nonroot
# or let Renovate or Dependabot (the docker ecosystem) propose the new digests.

# Build the manager and dingtalk-token-proxy binaries.
FROM golang:1.26.5@sha256:079e59808d2d252516e27e3f3a9c003740dee7f75e55aa71528766d52bcfc16a AS builder
ARG TARGETOS
ARG TARGETARCH
# Stamped into --version, as `make image` and `make release` do.
ARG VERSION=v0.0.0-dev
ARG COMMIT=

WORKDIR /workspace
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download

COPY cmd/main.go cmd/main.go
COPY cmd/dingtalk-token-proxy/ cmd/dingtalk-token-proxy/
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/

# Static binaries (no cgo) for the distroless base image, with Mozilla's CA roots compiled in
# (golang.org/x/crypto/x509roots/fallback). GOARCH is left to the builder's platform unless
# buildx sets TARGETARCH.
RUN export CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} && \
    LDFLAGS="-s -w -X github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version.Version=${VERSION} -X github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version.Commit=${COMMIT}" && \
    go build -trimpath -ldflags="${LDFLAGS}" -o manager ./cmd && \
    go build -trimpath -ldflags="${LDFLAGS}" -o dingtalk-token-proxy ./cmd/dingtalk-token-proxy

# The runtime image: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static:nonroot@sha256:963fa6c544fe5ce420f1f54fb88b6fb01479f054c8056d0f74cc2c6000df5240
WORKDIR /
COPY --from=builder /workspace/manager /manager
COPY --from=builder /workspace/dingtalk-token-proxy /dingtalk-token-proxy
USER 65532:65532

ENTRYPOINT ["/manager"]
