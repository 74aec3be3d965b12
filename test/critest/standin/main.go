// Command standin: one static multi-call binary, chosen by the base name it runs under, that
// plays the parts critest (cri-tools v1.29.0) expects from its test images and that Debian's
// Debian's busybox lacks. Built by test/critest/build-images.sh; standard library only.
//
//	nginx    web server on :80 (NGINX_PORT overrides), writes /var/run/nginx.pid; re-execs
//	         itself so /proc/<pid>/cmdline reads "nginx: master process ..." as nginx's does
//	         (comm stays "nginx", which pidof matches).
//	httpd    web server on :80, logs "Command line: 'httpd -D FOREGROUND'" as Apache does.
//	nnp      prints "Effective uid: N" (installed setuid root, as e2e's nonewprivs image).
//	pgrep    pgrep PATTERN: pids whose comm matches the regexp (not itself); exit 1 if none.
//	ipcs     ipcs [-m]: System V shared memory segments from /proc/sysvipc/shm.
//	pause    sleeps until SIGINT/SIGTERM (the sandbox image of the forwarding run's containerd).
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

const nginxArgv0 = "nginx: master process nginx -g daemon off;"

func main() {
	name := filepath.Base(os.Args[0])
	if strings.HasPrefix(os.Args[0], "nginx: ") {
		name = "nginx"
	}
	switch name {
	case "nginx":
		nginx()
	case "httpd", "httpd-foreground":
		httpd()
	case "nnp":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	case "pgrep":
		os.Exit(pgrep(os.Args[1:]))
	case "ipcs":
		os.Exit(ipcs())
	case "pause":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
		<-c
	default:
		fmt.Fprintf(os.Stderr, "standin: unknown applet %q\n", name)
		os.Exit(127)
	}
}

func serve(port, body string) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, body)
	})
	if err := http.ListenAndServe(":"+port, mux); err != nil {
		fmt.Fprintf(os.Stderr, "listen :%s: %v\n", port, err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func nginx() {
	if os.Args[0] != nginxArgv0 {
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, append([]string{nginxArgv0}, os.Args[1:]...), os.Environ())
		}
		fmt.Fprintf(os.Stderr, "nginx: re-exec: %v\n", err)
	}
	_ = os.MkdirAll("/var/run", 0o755)
	if err := os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "nginx: pid file: %v\n", err)
	}
	port := env("NGINX_PORT", "80")
	fmt.Printf("nginx stand-in: listening on :%s\n", port)
	serve(port, "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>\n")
}

func httpd() {
	fmt.Fprintf(os.Stderr, "[mpm_event:notice] AH00489: Apache/2.4.39 (Unix) (stand-in) configured -- resuming normal operations\n")
	fmt.Fprintf(os.Stderr, "[core:notice] AH00094: Command line: 'httpd -D FOREGROUND'\n")
	serve(env("HTTPD_PORT", "80"), "<html><body><h1>It works!</h1></body></html>\n")
}

func pgrep(args []string) int {
	var pat string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			pat = a
		}
	}
	if pat == "" {
		fmt.Fprintln(os.Stderr, "usage: pgrep PATTERN")
		return 2
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: %v\n", err)
		return 2
	}
	ents, _ := os.ReadDir("/proc")
	found := 1
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		if re.MatchString(strings.TrimSpace(string(comm))) {
			fmt.Println(pid)
			found = 0
		}
	}
	return found
}

func ipcs() int {
	data, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipcs: %v\n", err)
		return 1
	}
	fmt.Println("\n------ Shared Memory Segments --------")
	fmt.Println("key        shmid      owner      perms      bytes      nattch     status")
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 8 {
			continue
		}
		// key shmid perms size cpid lpid nattch uid ...
		key, _ := strconv.ParseInt(f[0], 10, 64)
		fmt.Printf("0x%08x %-10s %-10s %-10s %-10s %-10s\n", uint32(key), f[1], f[7], f[2], f[3], f[6])
	}
	fmt.Println()
	return 0
}
