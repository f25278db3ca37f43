# The manager's image, for those with a Docker engine: `make docker-build`.
#
# `make image` builds the same image without Docker and without pulling a base image (the
# daemonless path, hack/release): the static binary alone in one layer, user 65532:65532,
# entrypoint /manager, as OCI tarballs for linux/amd64 and linux/arm64. Keep the two equivalent.

# Build the manager binary.
FROM golang:1.26 AS builder
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
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/

# A static binary (no cgo) for the distroless base image, with Mozilla's CA roots compiled in
# (golang.org/x/crypto/x509roots/fallback). GOARCH is left to the builder's platform unless
# buildx sets TARGETARCH.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath \
    -ldflags="-s -w -X github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version.Version=${VERSION} -X github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version.Commit=${COMMIT}" \
    -o manager ./cmd

# The runtime image: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager /manager
USER 65532:65532

ENTRYPOINT ["/manager"]
