/*
Copyright 2026 The dingtalk-token-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package tokenproxy is dingtalk-token-proxy (cmd/dingtalk-token-proxy): a sidecar that lets an
// app call DingTalk without ever holding a token. The app points its DingTalk base URL at the
// proxy; the proxy adds the current token from the mounted target Secret and forwards over HTTPS.
//
//   - Source (token.go) keeps the token of the Secret's directory current: an fsnotify watch of
//     the directory (kubelet swaps a ..data link) and a re-check (one stat) on any use more than
//     a second after the last. Missing, unreadable, malformed or expired: no token.
//   - Proxy (proxy.go) serves one listener per API family, each on net/http/httputil's
//     ReverseProxy with a fixed upstream: the new API (token in x-acs-dingtalk-access-token, or
//     Authorization: Bearer) and the old one (?access_token=). It refuses CONNECT, targets that are
//     not a path and Hosts that name another server; removes every token the client sent; answers
//     503 without calling DingTalk when no valid token is held; removes the token from whatever
//     comes back (a redirect is passed through, never followed).
//   - retrier (retry.go) sends a request once more with the newer token when DingTalk answers that
//     the token is invalid and the token on disk changed since the request started.
//   - Server (server.go): the listeners with their timeouts, /metrics, /healthz, /readyz.
//
// Nothing it logs, counts or answers carries a token; request logs name the path, never the query.
package tokenproxy
