"""A local Lambda Runtime API for `make bench`.

Starts a binary with AWS_LAMBDA_RUNTIME_API pointing here, and measures:
- cold start (`--versus OTHER`): from the process's own start to its first
  `GET /runtime/invocation/next`. The start is stamped inside the forked child just before
  `execve` (CLOCK_MONOTONIC, shared by every process), the end when the request's headers have
  arrived on a plain socket the harness blocks on, so neither Python's process spawning nor an
  HTTP server thread is in the figure. The two binaries run interleaved, run by run, so drift on
  the machine hits both alike; the ratio is that of the medians;
- with --events FILE (JSON list of payloads): serves them one by one, records each response and
  how long each took (the first invocation pays the deferred set-up: TLS connector, first
  connections), and reads the process's peak RSS (VmHWM) after the last one.
Prints one JSON line.
"""
import argparse
import http.server
import json
import os
import socket
import statistics
import subprocess
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_once(binary, env, events):
    state = {"served": 0, "responses": [], "done": threading.Event(), "hwm_kb": None,
             "served_at": None, "durations_ms": []}
    proc_holder = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if state["served"] >= len(events):
                pid = proc_holder["proc"].pid
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            state["hwm_kb"] = int(line.split()[1])
                state["done"].set()
                time.sleep(30)  # hold the poll; the process is killed
                return
            payload = json.dumps(events[state["served"]]).encode()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", f"req-{state['served']}")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            state["served"] += 1
            state["served_at"] = time.perf_counter()

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            state["durations_ms"].append((time.perf_counter() - state["served_at"]) * 1000)
            state["responses"].append({"path": self.path, "body": json.loads(body or b"null")})
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run_env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}", AWS_LAMBDA_FUNCTION_NAME="bench",
                   AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_FUNCTION_VERSION="1")
    proc = subprocess.Popen([binary], env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc_holder["proc"] = proc
    state["done"].wait(timeout=120)
    proc.kill()
    proc.wait()
    server.shutdown()
    return {
        "peak_rss_mb": state["hwm_kb"] / 1024 if state["hwm_kb"] else None,
        "responses": state["responses"],
        "durations_ms": state["durations_ms"],
    }


def cold_start_ms(binary, env):
    """Milliseconds from `execve` of `binary` to the headers of its first Runtime API request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stamp_read, stamp_write = os.pipe()

    def stamp_exec():  # runs in the child, after fork, right before execve
        os.write(stamp_write, repr(time.perf_counter()).encode())

    proc = subprocess.Popen([binary], env=dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=stamp_exec, pass_fds=(stamp_write,))
    os.close(stamp_write)
    started = float(os.read(stamp_read, 64))
    os.close(stamp_read)
    listener.settimeout(60)
    conn, _ = listener.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            raise SystemExit(f"{binary} closed the connection before its first request")
        request += chunk
    polled = time.perf_counter()
    proc.kill()
    proc.wait()
    conn.close()
    listener.close()
    if not request.startswith(b"GET /2018-06-01/runtime/invocation/next"):
        raise SystemExit(f"{binary}: first request was not the invocation poll: {request[:80]!r}")
    return (polled - started) * 1000


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--versus", help="a second binary, run interleaved with the first")
    parser.add_argument("--events", help="JSON file: list of payloads to serve")
    args = parser.parse_args()
    events = json.load(open(args.events)) if args.events else []
    env = dict(os.environ, AWS_LAMBDA_FUNCTION_NAME="bench", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
               AWS_LAMBDA_FUNCTION_VERSION="1")
    if args.versus:
        colds = {args.binary: [], args.versus: []}
        for _ in range(args.runs):
            for binary in (args.binary, args.versus):
                colds[binary].append(cold_start_ms(binary, env))
        a, b = colds[args.binary], colds[args.versus]
        print(json.dumps({
            "runs_each": args.runs,
            "median_ms": statistics.median(a), "p95_ms": percentile(a, 0.95),
            "versus_median_ms": statistics.median(b), "versus_p95_ms": percentile(b, 0.95),
            "ratio": statistics.median(a) / statistics.median(b),
        }))
        return
    results = [run_once(args.binary, env, events) for _ in range(args.runs)]
    out = {"binary": os.path.basename(args.binary), "runs": len(results)}
    if events:
        last = results[-1]
        out["peak_rss_mb"] = last["peak_rss_mb"]
        out["responses"] = [r["path"].rsplit("/", 1)[-1] for r in last["responses"]]
        out["bodies"] = [r["body"] for r in last["responses"]]
        out["errors"] = [r["body"] for r in last["responses"] if r["path"].endswith("/error")]
        out["invocation_ms"] = last["durations_ms"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
