// Command load measures the latency Lumen adds on loopback.
//
// It starts an instant OpenAI-shaped fake upstream in process, starts the
// lumen binary as a separate process in front of it, then sends the same
// open-loop, fixed-rate load first to the upstream directly and then
// through Lumen, non-streaming and streaming, and prints mean/p50/p99 of
// each and the difference, plus Lumen's peak RSS (VmHWM).
//
//	go build -o lumen . && go run ./bench/load --rate 1000 --duration 10s
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

func main() {
	rate := flag.Int("rate", 1000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "measured duration of each run")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warm-up before each run")
	bin := flag.String("lumen", "./lumen", "lumen binary")
	chunks := flag.Int("chunks", 20, "chunks per streamed answer")
	extra := flag.String("config-extra", "", "YAML appended to the generated config (e.g. a second deployment)")
	proxyListen := flag.String("serve-proxy", "", "internal: run a bare reverse proxy on this address (the baseline hop)")
	proxyTo := flag.String("to", "", "internal: the baseline proxy's upstream")
	flag.Parse()
	if *proxyListen != "" {
		serveProxy(*proxyListen, *proxyTo)
		return
	}
	if err := run(*bin, *rate, *duration, *warmup, *chunks, *extra); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(bin string, rate int, duration, warmup time.Duration, chunks int, extra string) error {
	upstream, err := startUpstream(chunks)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "lumen-load")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`model_list:
  - model_name: bench
    litellm_params: {model: openai/bench, api_base: "%s/v1", api_key: sk-bench}
%s
server: {port: %d}
log: {level: warn}
`, upstream, extra, port)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting lumen: %w", err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	lumen := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitReady(lumen + "/health/readiness"); err != nil {
		return err
	}
	// The baseline: a bare net/http/httputil reverse proxy in its own
	// process. Any gateway pays this hop; "added" below is measured against
	// it as well as against the upstream itself.
	hopPort, err := freePort()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	hop := fmt.Sprintf("http://127.0.0.1:%d", hopPort)
	hcmd := exec.Command(self, "--serve-proxy", fmt.Sprintf("127.0.0.1:%d", hopPort), "--to", upstream)
	hcmd.Stderr = os.Stderr
	if err := hcmd.Start(); err != nil {
		return fmt.Errorf("starting baseline proxy: %w", err)
	}
	defer func() { _ = hcmd.Process.Kill(); _ = hcmd.Wait() }()
	if err := waitReady(hop + "/ready"); err != nil {
		return err
	}
	fmt.Printf("load: %d req/s for %s each (after %s warm-up), %d chunks per stream, GOMAXPROCS of this process %d, lumen pid %d\n\n",
		rate, duration, warmup, chunks, runtimeProcs(), cmd.Process.Pid)
	fmt.Printf("%-8s %-22s %9s %9s %9s %9s %8s\n", "mode", "target", "mean", "p50", "p99", "max", "errors")
	targets := []string{"direct", "bare reverse proxy hop", "lumen"}
	for _, stream := range []bool{false, true} {
		body := []byte(fmt.Sprintf(`{"model":"bench","stream":%v,"messages":[{"role":"user","content":"Say hello in one short sentence."}]}`, stream))
		var r [3]stats
		mode := "chat"
		if stream {
			mode = "stream"
		}
		for i, base := range []string{upstream, hop, lumen} {
			r[i] = load(base+"/v1/chat/completions", body, rate, duration, warmup)
			fmt.Printf("%-8s %-22s %9s %9s %9s %9s %8d\n", mode, targets[i],
				us(r[i].mean), us(r[i].p50), us(r[i].p99), us(r[i].max), r[i].errors)
		}
		fmt.Printf("%-8s %-22s %9s %9s %9s\n", "", "lumen added vs direct", us(r[2].mean-r[0].mean), us(r[2].p50-r[0].p50), us(r[2].p99-r[0].p99))
		fmt.Printf("%-8s %-22s %9s %9s %9s\n\n", "", "lumen added vs hop", us(r[2].mean-r[1].mean), us(r[2].p50-r[1].p50), us(r[2].p99-r[1].p99))
	}
	fmt.Printf("lumen peak RSS (VmHWM): %s\n", peakRSS(cmd.Process.Pid))
	return nil
}

type stats struct {
	mean, p50, p99, max time.Duration
	errors              int
}

// load sends body to url at a fixed rate, open loop: a slow answer does
// not delay the next request, so queueing shows up in the latencies.
func load(url string, body []byte, rate int, duration, warmup time.Duration) stats {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxIdleConns: 4096, IdleConnTimeout: time.Minute}}
	var mu sync.Mutex
	var lat []time.Duration
	errors := 0
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	end := start.Add(warmup + duration)
	for next := start; next.Before(end); next = next.Add(interval) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		measured := next.After(start.Add(warmup))
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			ok := err == nil
			if ok {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok = err == nil && resp.StatusCode == 200
			}
			d := time.Since(t0)
			if !measured {
				return
			}
			mu.Lock()
			if ok {
				lat = append(lat, d)
			} else {
				errors++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	client.CloseIdleConnections()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s := stats{errors: errors}
	if len(lat) == 0 {
		return s
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	s.mean = sum / time.Duration(len(lat))
	s.p50 = lat[len(lat)/2]
	s.p99 = lat[len(lat)*99/100]
	s.max = lat[len(lat)-1]
	return s
}

// startUpstream serves an instant OpenAI-shaped answer (and a stream of
// n chunks, each flushed) on a loopback port.
func startUpstream(n int) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	chat := []byte(`{"id":"chatcmpl-b","object":"chat.completion","created":1,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend."},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":5,"total_tokens":19}}`)
	chunk := []byte("data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"},\"finish_reason\":null}]}\n\n")
	tail := []byte("data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
		"data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":20,\"total_tokens\":34}}\n\ndata: [DONE]\n\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(chat)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		for i := 0; i < n; i++ {
			w.Write(chunk)
			f.Flush()
		}
		w.Write(tail)
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// serveProxy runs the baseline: httputil.ReverseProxy, flushing at once.
func serveProxy(addr, to string) {
	u, err := url.Parse(to)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 512, MaxIdleConns: 2048}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.Handle("/", rp)
	fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, mux))
	os.Exit(1)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("lumen did not become ready at %s", url)
}

func peakRSS(pid int) string {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func us(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d.Microseconds())/1000) }

func runtimeProcs() int { return runtimeGOMAXPROCS() }
