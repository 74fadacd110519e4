"""What the tenant agent and a run both use in a box: JSON (wire), HTTP/1.1 on a service
socket (http1), the host services socket (host)."""
