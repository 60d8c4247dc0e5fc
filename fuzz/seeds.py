#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/corpus/<target>/ (small files, checked in).

Seeds are what real peers send: SPDY frames and header blocks as kubectl / the kubelet's
SPDY library (moby/spdystream) write them, WebSocket frames and upgrade requests of the
channel.k8s.io protocols as Kubernetes clients send them, CRI log lines as containerd
writes them, real image references, and the OCI JSON and layer of an image built by
`cargo xtask oci-image` (pass the image archive with --image FILE.tar; without it those
seeds are left as they are).

Usage: fuzz/seeds.py [--image IMAGE.tar]
Only the standard library is needed. Existing seed files are overwritten, others kept.
"""

import base64
import gzip
import io
import json
import os
import re
import struct
import sys
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- SPDY/3.1

def spdy_dictionary():
    """The SPDY/3 zlib dictionary, read from the project's own table (headers.rs)."""
    src = open(os.path.join(HERE, "..", "crates", "cri-streaming", "src", "spdy", "headers.rs")).read()
    words = re.search(r"DICTIONARY_WORDS: \[&str; \d+\] = \[(.*?)\];", src, re.S).group(1)
    text = re.search(r"DICTIONARY_TEXT: \[&str; \d+\] = \[(.*?)\];", src, re.S).group(1)
    out = b""
    for w in re.findall(r'"((?:[^"\\]|\\.)*)"', words):
        out += struct.pack(">I", len(w)) + w.encode()
    for t in re.findall(r'"((?:[^"\\]|\\.)*)"', text):
        out += t.encode()
    assert len(out) == 1423, len(out)
    return out


class Compressor:
    """One direction's zlib context: every block sync-flushed in the same stream."""

    def __init__(self):
        self.z = zlib.compressobj(zdict=spdy_dictionary())

    def block(self, headers):
        raw = struct.pack(">I", len(headers))
        for name, value in headers:
            raw += struct.pack(">I", len(name)) + name.encode()
            raw += struct.pack(">I", len(value)) + value.encode()
        return self.z.compress(raw) + self.z.flush(zlib.Z_SYNC_FLUSH)


def control(kind, flags, payload):
    return struct.pack(">HHB", 0x8003, kind, flags) + struct.pack(">I", len(payload))[1:] + payload


def data_frame(stream, flags, payload):
    return struct.pack(">IB", stream, flags) + struct.pack(">I", len(payload))[1:] + payload


def syn_stream(stream, block, flags=0):
    return control(1, flags, struct.pack(">II", stream, 0) + b"\x00\x00" + block)


def syn_reply(stream, block, flags=0):
    return control(2, flags, struct.pack(">I", stream) + block)


def rst(stream, status):
    return control(3, 0, struct.pack(">II", stream, status))


def settings(entries):
    p = struct.pack(">I", len(entries))
    for i, v in entries:
        p += struct.pack(">II", i, v)
    return control(4, 0, p)


def ping(i):
    return control(6, 0, struct.pack(">I", i))


def goaway(last, status):
    return control(7, 0, struct.pack(">II", last, status))


def window_update(stream, delta):
    return control(9, 0, struct.pack(">II", stream, delta))


def exec_client_session(tty=False):
    """What `kubectl exec -i` (v4.channel.k8s.io over SPDY) sends: error, stdin, stdout,
    stderr streams (spdystream sends no SETTINGS), stdin data, FIN."""
    c = Compressor()
    kinds = ["error", "stdin", "stdout"] + ([] if tty else ["stderr"]) + (["resize"] if tty else [])
    wire, blocks = b"", []
    for i, kind in enumerate(kinds):
        b = c.block([("streamtype", kind)])
        blocks.append(b)
        wire += syn_stream(2 * i + 1, b, flags=1 if kind in ("stdout", "stderr") else 0)
    wire += data_frame(3, 0, b"echo hello\n") + data_frame(3, 1, b"")
    if tty:
        wire += data_frame(9, 0, b'{"Width":80,"Height":24}')
    wire += ping(1) + goaway(0, 0)
    return wire, blocks


def portforward_client_session(ports=(80,)):
    """What `kubectl port-forward` sends per connection: an error and a data stream with the
    same requestid and port, then data."""
    c = Compressor()
    wire, blocks, sid = b"", [], 1
    for n, port in enumerate(ports):
        for kind in ("error", "data"):
            b = c.block([("streamtype", kind), ("port", str(port)), ("requestid", str(n))])
            blocks.append(b)
            wire += syn_stream(sid, b, flags=1 if kind == "error" else 0)
            sid += 2
        wire += data_frame(sid - 2, 0, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return wire, blocks


def server_replies():
    """What a SPDY server (the kubelet's streaming server) answers a client with."""
    c = Compressor()
    wire = settings([(7, 1 << 20)]) + window_update(0, 4 << 20)
    for sid in (1, 3, 5, 7):
        wire += syn_reply(sid, c.block([]))
    wire += data_frame(5, 0, b"hello\n") + data_frame(5, 1, b"")
    status = json.dumps({"metadata": {}, "status": "Success"}).encode()
    wire += data_frame(1, 1, status) + window_update(3, 1024) + rst(7, 5) + ping(2) + goaway(7, 0)
    return wire


def spdy_seeds():
    for name, tty in (("exec", False), ("exec-tty", True)):
        wire, blocks = exec_client_session(tty)
        put("spdy_frame", f"server-{name}", b"\x00" + wire)
        put("spdy_headers", name, b"".join(struct.pack(">H", len(b)) + b for b in blocks))
    wire, blocks = portforward_client_session((80, 8080))
    put("spdy_frame", "server-portforward", b"\x00" + wire)
    put("spdy_headers", "portforward", b"".join(struct.pack(">H", len(b)) + b for b in blocks))
    put("spdy_frame", "client-replies", b"\x01" + server_replies())
    put("spdy_frame", "settings-window-ping", b"\x00" + settings([(7, 65536), (4, 100)]) + window_update(0, 1 << 20) + ping(1))
    # Long header values and many headers in one block.
    c = Compressor()
    many = c.block([(f"x-header-{i}", "v" * i) for i in range(40)])
    put("spdy_headers", "many", struct.pack(">H", len(many)) + many)
    multi = Compressor().block([("streamtype", "stdout"), ("accept", "a\x00b\x00c")])
    put("spdy_headers", "multi-value", struct.pack(">H", len(multi)) + multi)


# ---------------------------------------------------------------- WebSocket

def ws_frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d"):
    """A client-to-server frame (masked, as clients must)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io",
             "channel.k8s.io", "base64.channel.k8s.io"]


def ws_exec_frames(index):
    """kubectl exec over WebSocket: stdin data, a resize, then (v5) CLOSE of stdin."""
    base64_proto = "base64" in PROTOCOLS[index]
    out = b""
    if base64_proto:
        out += ws_frame(1, b"0" + base64.b64encode(b"echo hello\n"))
        out += ws_frame(1, b"4" + base64.b64encode(b'{"Width":80,"Height":24}'))
    else:
        out += ws_frame(2, b"\x00echo hello\n")
        out += ws_frame(2, b'\x04{"Width":80,"Height":24}')
        if index == 0:
            out += ws_frame(2, b"\xff\x00")
    out += ws_frame(9, b"ping") + ws_frame(8, struct.pack(">H", 1000))
    return out


def ws_seeds():
    for i, name in enumerate(PROTOCOLS):
        put("websocket_frame", f"exec-{name}", bytes([i]) + ws_exec_frames(i))
    # A fragmented binary message, an empty one, a large-length header.
    frag = ws_frame(2, b"\x00par", fin=False) + ws_frame(0, b"tial\n")
    put("websocket_frame", "fragmented-v4", b"\x01" + frag + ws_frame(2, b"") + ws_frame(8, b""))
    put("websocket_frame", "port-prefix-v4", b"\x01" + ws_frame(2, b"\x00\x50\x00") + ws_frame(2, b"\x01\x50\x00") + ws_frame(2, b"\x00GET / HTTP/1.0\r\n\r\n"))
    put("websocket_frame", "long-v5", b"\x00" + ws_frame(2, b"\x00" + b"x" * 300))


def ws_upgrade(query, protocols):
    return (f"GET @PATH@{query} HTTP/1.1\r\nHost: 127.0.0.1:10010\r\n"
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n"
            "User-Agent: kubectl/v1.31.0 (linux/amd64) kubernetes/abcdef\r\n\r\n").encode()


def spdy_upgrade(query, versions, method="POST"):
    head = (f"{method} @PATH@{query} HTTP/1.1\r\nHost: 127.0.0.1:10010\r\n"
            "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n")
    for v in versions:
        head += f"X-Stream-Protocol-Version: {v}\r\n"
    return (head + "Content-Length: 0\r\n\r\n").encode()


def handshake_seeds():
    q = "?command=sh&command=-c&command=echo+hi&input=1&output=1&error=1"
    put("websocket_handshake", "ws-exec-v5", b"\x00" + ws_upgrade(q, PROTOCOLS) + ws_exec_frames(0))
    put("websocket_handshake", "ws-exec-v4-base64", b"\x00" + ws_upgrade(q, PROTOCOLS[2:3]) + ws_exec_frames(2))
    put("websocket_handshake", "ws-attach-v4", b"\x01" + ws_upgrade("?input=1&output=1", PROTOCOLS[1:2]) + ws_exec_frames(1))
    put("websocket_handshake", "ws-portforward", b"\x02" + ws_upgrade("?ports=80", ["v4.channel.k8s.io"]))
    wire, _ = exec_client_session()
    versions = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
    put("websocket_handshake", "spdy-exec", b"\x00" + spdy_upgrade(q, versions) + wire)
    put("websocket_handshake", "spdy-attach", b"\x01" + spdy_upgrade("?stdin=1&stdout=1", versions) + wire)
    put("websocket_handshake", "no-upgrade", b"\x00GET @PATH@ HTTP/1.1\r\nHost: x\r\n\r\n")
    put("websocket_handshake", "bad-version", b"\x00" + ws_upgrade("", ["v9.channel.k8s.io"]))
    wire, _ = portforward_client_session((80,))
    put("portforward_headers", "spdy-one-port", spdy_upgrade("", ["portforward.k8s.io"]) + wire)
    wire, _ = portforward_client_session((80, 8080, 80))
    put("portforward_headers", "spdy-ports", spdy_upgrade("", ["portforward.k8s.io"]) + wire)
    frames = ws_frame(2, b"\x00GET / HTTP/1.0\r\n\r\n")
    put("portforward_headers", "ws-v4", ws_upgrade("?port=80", ["v4.channel.k8s.io"]) + frames)
    put("portforward_headers", "ws-v4-base64", ws_upgrade("?port=80&port=8080", ["v4.base64.channel.k8s.io"]) + ws_frame(1, b"0" + base64.b64encode(b"hi")))
    put("portforward_headers", "ws-port-not-allowed", ws_upgrade("?port=22", ["v4.channel.k8s.io"]) + frames)


# ---------------------------------------------------------------- CRI logs

def log_seeds():
    lines = (b"2024-01-02T03:04:05.123456789Z stdout F hello world\n"
             b"2024-01-02T03:04:05.123456790Z stderr P a partial \n"
             b"2024-01-02T03:04:05.123456791Z stderr F line, completed\n"
             b"2024-01-02T03:04:05.223456789+01:00 stdout F \n"
             b"2024-01-02T03:04:06.000000000Z stdout P no newline at the end\n")
    put("cri_log", "log-file", b"\x3f\x1f" + lines)
    put("cri_log", "tty-output", b"\x0f\x03" + b"$ ls\r\nbin  etc  usr\r\n$ \x1b[01;32mcolour\x1b[0m\r\n")
    put("cri_log", "long-line", b"\x07\x00" + b"0123456789" * 12 + b"\nshort\n\n")
    put("cri_log", "keep-cr", b"\x88\x10" + b"a\r\nb\rc\r\r\n\xff\xfe invalid utf-8\n")
    put("cri_log", "unterminated", b"\x20\x40" + b"a line without its newline")


# ---------------------------------------------------------------- images

def reference_seeds():
    refs = ["busybox", "busybox:1.36", "library/busybox:latest", "docker.io/library/busybox:1.36.1",
            "registry.k8s.io/pause:3.10", "registry.k8s.io/e2e-test-images/agnhost:2.52",
            "gcr.io/google-containers/pause-amd64:3.1", "localhost:5000/foo/bar:tag",
            "127.0.0.1:5000/fuzz@sha256:" + "a" * 64,
            "quay.io/coreos/etcd:v3.5.0@sha256:" + "0123456789abcdef" * 4,
            "[::1]:5000/img:1", "sha256:" + "b" * 64, "ghcr.io/owner/repo/sub/image:v1.2.3-rc.1_x",
            "docker.io/library/fuzz:1", "UPPER/case", "a" * 130]
    for i, r in enumerate(refs):
        put("image_reference", f"ref{i:02}", r.encode())


DOCKER_LIST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests": [
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
         "digest": "sha256:" + "1" * 64, "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 528,
         "digest": "sha256:" + "2" * 64, "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 566,
         "digest": "sha256:" + "3" * 64, "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
    ],
}
DOCKER_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1472,
               "digest": "sha256:" + "4" * 64},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2152262,
                "digest": "sha256:" + "5" * 64}],
}


def tar_bytes(entries):
    """A plain tar of (name, type, content-or-linkname) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, kind, body in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "file":
                info.size, info.mode = len(body), 0o644
                tar.addfile(info, io.BytesIO(body))
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, body
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, body
                tar.addfile(info)
    return buf.getvalue()


def layer_seed(mode, layers):
    out = bytes([mode])
    for layer in layers:
        assert len(layer) < 65536
        out += struct.pack(">H", len(layer)) + layer
    return out


def image_seeds(image):
    put("image_json", "docker-manifest-list", b"\x00" + json.dumps(DOCKER_LIST).encode())
    put("image_json", "docker-manifest", b"\x00" + json.dumps(DOCKER_MANIFEST).encode())
    put("image_json", "schema1", b"\x00" + json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode())
    base = tar_bytes([("etc/", "dir", None), ("etc/passwd", "file", b"root:x:0:0::/root:/bin/sh\n"),
                      ("bin/", "dir", None), ("bin/busybox", "file", b"#!/bin/sh\n"),
                      ("bin/sh", "symlink", "busybox"), ("bin/ls", "hardlink", "bin/busybox"),
                      ("tmp/", "dir", None), ("tmp/gone", "file", b"x")])
    upper = tar_bytes([("tmp/.wh.gone", "file", b""), ("etc/.wh..wh..opq", "file", b""),
                       ("etc/hostname", "file", b"fuzz\n"), ("lib", "symlink", "/usr/lib"),
                       ("usr/lib/x", "file", b"through an absolute symlink\n")])
    escape = tar_bytes([("link", "symlink", "../../outside"), ("link/file", "file", b"escape?\n"),
                        ("abs", "symlink", "/"), ("abs/tmp/escaped", "file", b"escape?\n")])
    put("layer_unpack", "two-layers-whiteouts", layer_seed(0, [base, upper]))
    put("layer_unpack", "gzip-layer", layer_seed(1, [gzip.compress(base, mtime=0)]))
    put("layer_unpack", "escape-attempts", layer_seed(0, [escape]))
    if image is None:
        return
    with tarfile.open(image) as archive:
        index = archive.extractfile("index.json").read()
        put("image_json", "oci-index", b"\x00" + index)
        manifest_digest = json.loads(index)["manifests"][0]["digest"].split(":")[1]
        manifest = archive.extractfile(f"blobs/sha256/{manifest_digest}").read()
        put("image_json", "oci-manifest", b"\x00" + manifest)
        m = json.loads(manifest)
        config = archive.extractfile("blobs/sha256/" + m["config"]["digest"].split(":")[1]).read()
        layers = len(m["layers"])
        put("image_json", "oci-config", bytes([1 | (layers << 1)]) + config)
        layer = archive.extractfile("blobs/sha256/" + m["layers"][0]["digest"].split(":")[1]).read()
        put("layer_unpack", "xtask-oci-image-layer", layer_seed(0, [layer]))


# ---------------------------------------------------------------- CRI requests

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, value):
    if isinstance(value, bool):
        return varint(num << 3) + varint(int(value))
    if isinstance(value, int):
        return varint(num << 3) + varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


METHODS = ["Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
           "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
           "ListContainers", "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog",
           "ExecSync", "Exec", "Attach", "PortForward", "ContainerStats", "ListContainerStats",
           "PodSandboxStats", "ListPodSandboxStats", "UpdateRuntimeConfig", "Status",
           "CheckpointContainer", "GetContainerEvents", "ListMetricDescriptors",
           "ListPodSandboxMetrics", "RuntimeConfig", "UpdatePodSandboxResources",
           "StreamPodSandboxes", "StreamContainers", "StreamContainerStats",
           "StreamPodSandboxStats", "StreamPodSandboxMetrics", "CheckpointPod", "RestorePod",
           "ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo", "StreamImages"]


def call(method, payload):
    return bytes([METHODS.index(method)]) + struct.pack(">H", len(payload)) + payload


def cri_request_seeds():
    import hashlib
    sandbox_id = hashlib.sha256(b"sandbox:1").hexdigest()
    container_id = hashlib.sha256(b"container:2").hexdigest()
    meta = field(1, "nginx") + field(2, "uid-1") + field(3, "default") + field(4, 0)
    pod_config = field(1, meta) + field(2, "nginx") + field(3, "/var/log/pods/default_nginx_uid-1")
    image = field(1, "busybox")
    container = (field(1, field(1, "main") + field(2, 0)) + field(2, image) + field(3, "sh")
                 + field(4, "-c") + field(4, "sleep 1000") + field(6, field(1, "A") + field(2, "b"))
                 + field(11, "main/0.log"))
    seq = (call("Version", field(1, "v1"))
           + call("PullImage", field(1, image) + field(3, pod_config))
           + call("RunPodSandbox", field(1, pod_config))
           + call("CreateContainer", field(1, sandbox_id) + field(2, container) + field(3, pod_config))
           + call("StartContainer", field(1, container_id))
           + call("ExecSync", field(1, container_id) + field(2, "echo") + field(2, "hi") + field(3, 5))
           + call("StopContainer", field(1, container_id) + field(2, 0))
           + call("RemovePodSandbox", field(1, sandbox_id)))
    put("cri_request", "kubelet-pod-lifecycle", seq)
    put("cri_request", "status-lists", call("Status", field(1, True)) + call("ListPodSandbox", b"")
        + call("ListContainers", b"") + call("ListImages", b"") + call("ImageFsInfo", b"")
        + call("GetContainerEvents", b"") + call("ListContainerStats", b""))
    put("cri_request", "exec-portforward", call("RunPodSandbox", field(1, pod_config))
        + call("Exec", field(1, container_id) + field(2, "sh") + field(4, True) + field(5, True))
        + call("PortForward", field(1, sandbox_id) + field(2, 80)))
    put("cri_request", "garbage", call("CreateContainer", b"\xff\xff\xff\xff\x0f") + call("Version", b"\x0a\x80"))


# ---------------------------------------------------------------- CLI

def cli_seeds():
    for i, d in enumerate(["30s", "2m", "1m30s", "500ms", "45", "1.5h", "10us", "3µs", "0"]):
        put("cli_parsers", f"duration{i}", b"\x00" + d.encode())
    for i, m in enumerate(["536870912", "512m", "1Gi", "2GB", "4k", "1t"]):
        put("cli_parsers", f"memory{i}", b"\x01" + m.encode())
    put("cli_parsers", "config-crictl", b"\x02runtime-endpoint: unix:///run/containerd/containerd.sock\n"
        b"image-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 10\ndebug: false\n")
    put("cli_parsers", "config-text-timeout", b"\x02runtime-endpoint: /run/crio/crio.sock\ntimeout: 2m\n")


def main():
    image = None
    if len(sys.argv) == 3 and sys.argv[1] == "--image":
        image = sys.argv[2]
    elif len(sys.argv) != 1:
        sys.exit(__doc__)
    spdy_seeds()
    ws_seeds()
    handshake_seeds()
    log_seeds()
    reference_seeds()
    image_seeds(image)
    cri_request_seeds()
    cli_seeds()


if __name__ == "__main__":
    main()
