// The SPDY path against a real SPDY implementation: moby/spdystream (what client-go, crictl and
// the kubelet use), from Debian's golang-github-docker-spdystream-dev, driven by a small Go
// client built here; and SPDY tunnelled in WebSocket binary messages the way client-go's
// NewSPDYOverWebsocketDialer does it (crictl/kubectl port-forward over WebSocket), with
// gorilla/websocket (golang-github-gorilla-websocket-dev). Skipped when Go or a package is missing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { StreamServer } from '../../src/stream/server.js';

const GOPATH_SYS = '/usr/share/gocode';
const haveGo = existsSync('/usr/bin/go') && existsSync(join(GOPATH_SYS, 'src/github.com/moby/spdystream/connection.go'));
const haveGorilla = haveGo && existsSync(join(GOPATH_SYS, 'src/github.com/gorilla/websocket/conn.go'));

/** Opens a client stream with these headers and waits for its reply (both Go clients use it). */
const GO_STREAM = String.raw`func stream(conn *spdystream.Connection, kv ...string) *spdystream.Stream {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 { h.Set(kv[i], kv[i+1]) }
	s, err := conn.CreateStream(h, nil, false)
	if err != nil { panic(err) }
	if err := s.WaitTimeout(5 * time.Second); err != nil { panic(err) }
	return s
}
`;

const GO_CLIENT = String.raw`package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/moby/spdystream"
)

func dial(raw string, protos []string) (*spdystream.Connection, string) {
	u, _ := url.Parse(raw)
	c, err := net.Dial("tcp", u.Host)
	if err != nil { panic(err) }
	req := "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
	for _, p := range protos { req += "X-Stream-Protocol-Version: " + p + "\r\n" }
	req += "Content-Length: 0\r\n\r\n"
	c.Write([]byte(req))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil { panic(err) }
	if resp.StatusCode != 101 { panic(fmt.Sprint("status ", resp.StatusCode)) }
	if br.Buffered() > 0 { panic("buffered bytes after 101") }
	conn, err := spdystream.NewConnection(c, false)
	if err != nil { panic(err) }
	go conn.Serve(spdystream.NoOpStreamHandler)
	return conn, resp.Header.Get("X-Stream-Protocol-Version")
}

${GO_STREAM}
func main() {
	attachURL, pfURL, port := os.Args[1], os.Args[2], os.Args[3]
	conn, proto := dial(attachURL, []string{"v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"})
	fmt.Println("attach protocol:", proto)
	errS := stream(conn, "streamType", "error")
	stdin := stream(conn, "streamType", "stdin")
	stdout := stream(conn, "streamType", "stdout")
	stream(conn, "streamType", "stderr")
	big := strings.Repeat("q", 300*1024)
	go func() { stdin.Write([]byte("hello-from-go")); stdin.Write([]byte(big)); stdin.Close() }()
	want := len("echo:hello-from-go") + len(big)
	got := 0
	buf := make([]byte, 65536)
	var first []byte
	for got < want {
		n, err := stdout.Read(buf)
		if got == 0 { first = append([]byte{}, buf[:20]...) }
		got += strings.Count(string(buf[:n]), "q") + strings.Count(string(buf[:n]), "echo:hello-from-go")*len("echo:hello-from-go")
		if err != nil { fmt.Println("stdout err", err); break }
	}
	fmt.Printf("attach: first bytes %q, %d/%d payload bytes back\n", first, got, want)
	status, _ := io.ReadAll(errS)
	fmt.Println("attach status:", string(status))

	pconn, pproto := dial(pfURL, []string{"portforward.k8s.io"})
	fmt.Println("portforward protocol:", pproto)
	pe := stream(pconn, "streamType", "error", "port", port, "requestID", "0")
	pe.Close()
	pd := stream(pconn, "streamType", "data", "port", port, "requestID", "0")
	pd.Write([]byte("ping-over-spdy"))
	n, _ := pd.Read(buf)
	fmt.Printf("portforward echo: %q\n", buf[:n])
	pd.Close()
	rest, _ := io.ReadAll(pd)
	fmt.Printf("portforward after close: %q (EOF)\n", rest)
	pconn.Close()
}
`;

// A net.Conn over WebSocket binary messages, as client-go's TunnelingConnection: each write is one
// message, reads run through messages as one byte stream.
const GO_TUNNEL_CLIENT = String.raw`package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/moby/spdystream"
)

type tunnel struct {
	*websocket.Conn
	r io.Reader
}

func (t *tunnel) Read(p []byte) (int, error) {
	for {
		if t.r == nil {
			typ, r, err := t.NextReader()
			if err != nil { return 0, io.EOF }
			if typ != websocket.BinaryMessage { return 0, fmt.Errorf("message type %d", typ) }
			t.r = r
		}
		n, err := t.r.Read(p)
		if err == io.EOF {
			t.r = nil
			if n > 0 { return n, nil }
			continue
		}
		return n, err
	}
}

func (t *tunnel) Write(p []byte) (int, error) {
	if err := t.WriteMessage(websocket.BinaryMessage, p); err != nil { return 0, err }
	return len(p), nil
}

func (t *tunnel) SetDeadline(d time.Time) error {
	t.SetReadDeadline(d)
	return t.SetWriteDeadline(d)
}

func dial(raw string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{Subprotocols: []string{"SPDY/3.1+portforward.k8s.io"}}
	return d.Dial(strings.Replace(raw, "http", "ws", 1), nil)
}

${GO_STREAM}
func main() {
	raw, port := os.Args[1], os.Args[2]
	ws, _, err := dial(raw)
	if err != nil { panic(err) }
	fmt.Println("tunnel protocol:", ws.Subprotocol())
	conn, err := spdystream.NewConnection(&tunnel{Conn: ws}, false)
	if err != nil { panic(err) }
	go conn.Serve(spdystream.NoOpStreamHandler)
	e := stream(conn, "streamType", "error", "port", port, "requestID", "0")
	e.Close()
	data := stream(conn, "streamType", "data", "port", port, "requestID", "0")
	big := strings.Repeat("t", 200*1024)
	go func() { data.Write([]byte("ping-over-tunnel")); data.Write([]byte(big)); data.Close() }()
	got, _ := io.ReadAll(data)
	fmt.Printf("tunnel echo: %q, %d bytes, then EOF\n", got[:16], len(got))
	conn.Close()
	_, resp, err := dial(raw)
	if resp != nil { fmt.Println("replayed token:", resp.StatusCode) } else { fmt.Println("replayed token:", err) }
}
`;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { env, cwd, timeout: 90_000 }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${out}\n${errOut}`)) : resolve(out))),
  );
}

let dir: string;
let client: string;
let tunnelClient: string;
let server: StreamServer;
let echo: Server;
let echoPort: number;

beforeAll(async () => {
  if (!haveGo) return;
  dir = mkdtempSync(join(tmpdir(), 'vmlet-spdy-go-'));
  const src = join(dir, 'src/spdyclient');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'main.go'), GO_CLIENT);
  client = join(dir, 'client');
  const env = { ...process.env, GO111MODULE: 'off', GOPATH: `${dir}:${GOPATH_SYS}`, GOCACHE: join(dir, 'cache'), GOFLAGS: '' };
  await run('go', ['build', '-o', client, '.'], env, src);
  if (haveGorilla) {
    const tsrc = join(dir, 'src/tunnelclient');
    mkdirSync(tsrc, { recursive: true });
    writeFileSync(join(tsrc, 'main.go'), GO_TUNNEL_CLIENT);
    tunnelClient = join(dir, 'tunnel-client');
    await run('go', ['build', '-o', tunnelClient, '.'], env, tsrc);
  }
  echo = createServer((s) => {
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  echoPort = (echo.address() as { port: number }).port;
  server = await StreamServer.start({
    log: pino({ level: 'silent' }),
    backend: {
      attach: async (_r, io) =>
        new Promise<void>((resolve) => {
          let first = true;
          io.stdin!.on('data', (d: Buffer) => {
            io.stdout!.write(first ? Buffer.concat([Buffer.from('echo:'), d]) : d);
            first = false;
          });
          io.stdin!.on('end', () => setTimeout(resolve, 50));
          io.signal.addEventListener('abort', () => resolve());
        }),
      exec: async () => ({ exitCode: 0 }),
      portForward: (_id, p) =>
        new Promise<Socket>((res, rej) => {
          const s = connect(p, '127.0.0.1');
          s.once('connect', () => res(s));
          s.once('error', rej);
        }),
    },
  });
}, 120_000);

afterAll(async () => {
  if (!haveGo) return;
  await server?.close();
  echo?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveGo)('SPDY/3.1 with a moby/spdystream client', () => {
  it('attaches (v4, 300 KiB both ways, Success status) and port-forwards (echo, EOF)', async () => {
    const a = server.registerAttach({ containerId: 'c', tty: false, stdin: true, stdout: true, stderr: true });
    const pf = server.registerPortForward({ podSandboxId: 'p', ports: [echoPort] });
    const out = await run(client, [a, pf, String(echoPort)], process.env);
    expect(out).toContain('attach protocol: v4.channel.k8s.io');
    expect(out).toMatch(/attach: first bytes "echo:hello-from-go.*", 307218\/307218 payload bytes back/);
    expect(out).toContain('attach status: {"metadata":{},"status":"Success"}');
    expect(out).toContain('portforward protocol: portforward.k8s.io');
    expect(out).toContain('portforward echo: "ping-over-spdy"');
    expect(out).toContain('portforward after close: "" (EOF)');
  });
});

describe.skipIf(!haveGorilla)('SPDY/3.1 tunnelled in WebSocket (SPDY/3.1+portforward.k8s.io) with gorilla/websocket', () => {
  it('port-forwards (echo of 200 KiB, EOF after close) and refuses the used token', async () => {
    const pf = server.registerPortForward({ podSandboxId: 'p', ports: [echoPort] });
    const out = await run(tunnelClient, [pf, String(echoPort)], process.env);
    expect(out).toContain('tunnel protocol: SPDY/3.1+portforward.k8s.io');
    expect(out).toContain(`tunnel echo: "ping-over-tunnel", ${16 + 200 * 1024} bytes, then EOF`);
    expect(out).toContain('replayed token: 404');
  });
});
