"""Reward serving: any reward backend behind HTTP for many clients (`lrm-robot serve`).

- `lrm.serving.wire`: RewardRequests and Rewards as JSON, frames as raw bytes or PNG (never pickles), size limits.
- `lrm.serving.config`: ServeConfig (backend, host/port, batching, replicas, limits).
- `lrm.serving.app`: the Ray Serve application (imports ray when used).

The client side is the `remote` backend (lrm.backends.remote), which speaks the wire format.
"""
