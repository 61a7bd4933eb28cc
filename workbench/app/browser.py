"""Headless Chromium over the DevTools protocol, with nothing but the standard library.

Used by the app's end-to-end test and by ``python -m workbench.app.browser`` (the README's
screenshots). It starts Debian's ``chromium`` with a fresh profile and the flags that keep it
offline and quiet, opens one page, and speaks the Chrome DevTools Protocol
(https://chromedevtools.github.io/devtools-protocol/) over a minimal RFC 6455 WebSocket client:
navigate, evaluate JavaScript, wait for a condition, take a PNG screenshot. No test framework's
own browser download is needed (none works offline).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--mute-audio")


def find_chromium() -> str | None:
    """The Chromium binary (``$CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH)."""
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    return next((found for c in candidates if c and (found := shutil.which(c))), None)


class _WebSocket:
    """Just enough RFC 6455 for CDP: masked text frames out, text frames in (any length)."""

    def __init__(self, url: str, timeout: float = 30.0):
        assert url.startswith("ws://"), url
        host_port, _, path = url[5:].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        head, _, self._buffer = response.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:200]!r}")

    def send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                  bytes([0x80 | 126]) + struct.pack(">H", n) if n < 1 << 16 else
                                  bytes([0x80 | 127]) + struct.pack(">Q", n))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = first & 0x0F
            if opcode == 8:
                raise ConnectionError("DevTools closed the connection")
            if opcode in (9, 10):          # ping / pong: not used by DevTools in practice
                continue
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Chromium:
    """One headless Chromium page: ``with Chromium() as page: page.goto(url); page.evaluate(js)``."""

    def __init__(self, width: int = 1280, height: int = 900, binary: str | None = None):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise FileNotFoundError("chromium not found: apt-get install -y chromium (or set $CHROMIUM)")
        self.width, self.height = width, height
        self._id = 0

    def __enter__(self) -> "Chromium":
        self.profile = tempfile.mkdtemp(prefix="workbench-chromium-")
        self.process = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._devtools_port()
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(p for p in pages if p.get("type") == "page")
        self.ws = _WebSocket(page["webSocketDebuggerUrl"])
        self.resize(self.width, self.height)
        return self

    def resize(self, width: int, height: int) -> None:
        """The viewport's size in CSS pixels (a taller one screenshots a long tab whole)."""
        self.width, self.height = width, height
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def __exit__(self, *exc) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)

    def _devtools_port(self, timeout: float = 60.0) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode} at start")
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, **params):
        """One CDP command; returns its result (events that arrive meanwhile are dropped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """Value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails'].get('text')} in {expression[:80]}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25):
        """Poll ``expression`` until it is truthy; returns its value, or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for: {expression}")

    def screenshot(self, path: str | Path) -> Path:
        """The viewport as a PNG file."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    # -- Gradio helpers ---------------------------------------------------------------------
    def open_tab(self, name: str) -> None:
        """Click the Gradio tab button labelled ``name``."""
        self.wait_for(f"[...document.querySelectorAll('button[role=tab]')].some(b => b.innerText.trim() == {json.dumps(name)})")
        self.evaluate(f"[...document.querySelectorAll('button[role=tab]')]"
                      f".find(b => b.innerText.trim() == {json.dumps(name)}).click()")

    def type_into(self, elem_id: str, text: str) -> None:
        """Set the textbox ``#elem_id`` to ``text`` as typing would (an input event)."""
        self.evaluate(f"(() => {{ const el = document.querySelector('#{elem_id} textarea, #{elem_id} input');"
                      f"el.value = {json.dumps(text)}; el.dispatchEvent(new Event('input', {{bubbles: true}}));"
                      f"return true; }})()")

    def click(self, elem_id: str) -> None:
        self.evaluate(f"document.querySelector('#{elem_id}').click()")


def screenshots(url: str, out: str | Path, width: int = 1200, height: int = 860) -> list[Path]:
    """One small PNG per tab of the running app at ``url`` (after a query, an answer, a grounded
    query, relevancy maps, a lab run): what the README shows. The Grounding and Attention tabs
    are shot whole (a taller viewport). Colours are reduced to a 256-colour palette to keep files
    small."""
    from PIL import Image

    out, shots = Path(out), []

    def shoot(page: Chromium, name: str, tall: int | None = None) -> None:
        """Shoot the page; with ``tall``, at that viewport height (then back) so the tab fits."""
        if tall:
            page.resize(width, tall)
            time.sleep(3)
        path = page.screenshot(out / f"{name}.png")
        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
        shots.append(path)
        if tall:
            page.resize(width, height)

    with Chromium(width, height) as page:
        page.goto(url)
        page.wait_for("document.querySelector('#query textarea, #query input') !== null", timeout=120)
        page.type_into("query", "a red cross becomes larger")
        page.click("search")
        page.wait_for("document.querySelectorAll('#gallery img').length >= 4", timeout=120)
        time.sleep(2)
        shoot(page, "retrieval")
        page.open_tab("Video QA")
        page.wait_for("document.querySelector('#qa-question') !== null", timeout=30)
        page.type_into("qa-question", "what colour is the shape that grows")
        page.type_into("qa-answers", "red\nblue\ngreen\nyellow\npurple")
        page.click("qa-run")
        page.wait_for("document.querySelector('#qa-table').innerText.includes('the red shape')", timeout=120)
        time.sleep(1)
        shoot(page, "video_qa")
        page.open_tab("Grounding")
        page.wait_for("document.querySelector('#g-query textarea, #g-query input').value.length > 0", timeout=60)
        page.type_into("g-query", "the white square gets smaller")
        page.click("g-run")
        page.wait_for("document.querySelector('#g-note').innerText.includes('IoU')", timeout=120)
        page.wait_for("document.querySelector('#g-span video') !== null", timeout=60)
        shoot(page, "grounding", tall=1680)
        page.open_tab("Attention")
        page.wait_for("document.querySelector('#a-query textarea, #a-query input').value.length > 0", timeout=60)
        page.click("a-run")
        page.wait_for("document.querySelector('#a-note').innerText.includes('%')", timeout=120)
        shoot(page, "attention", tall=1460)
        page.open_tab("Strategy lab")
        page.click("lab-run")
        page.wait_for("document.querySelector('#lab-table').innerText.includes('prompt-visual')", timeout=600)
        time.sleep(2)
        shoot(page, "strategy_lab")
        page.open_tab("Model")
        page.wait_for("document.body.innerText.includes('What it knows')", timeout=30)
        time.sleep(2)
        shoot(page, "model")
    return shots


if __name__ == "__main__":
    import sys

    for shot in screenshots(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "docs/screenshots"):
        print(shot, shot.stat().st_size // 1024, "KB")
