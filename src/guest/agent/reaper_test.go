package main

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// The reaper waits for every child with wait4(-1): a command run through reaper.output gets its
// output and status, however many run at once; one run through exec.Cmd beside it can lose its
// child to the reaper (ECHILD), which is why the agent runs none that way. In a child process of
// the test binary: a reaper, once started, takes every child of its process (other tests' too).
func TestReaperOutputAmongConcurrentChildren(t *testing.T) {
	if os.Getenv("VMLET_REAPER_TEST_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReaperOutputAmongConcurrentChildren$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "VMLET_REAPER_TEST_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the child test failed: %v\n%s", err, out)
		}
		t.Logf("%s", out)
		return
	}
	r := newReaper()
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, ws, err := r.output("/bin/sh", []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"})
			if err != nil || !ws.Exited() || ws.ExitStatus() != 3 || string(out) != "out\nerr\n" {
				errs <- strings.TrimSpace(string(out))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a run through the reaper went wrong: %q", e)
	}
	// What the agent did before: exec.Cmd races the reaper for the exit status.
	lost := 0
	for i := 0; i < 50; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil && strings.Contains(err.Error(), "no child processes") {
			lost++
		}
	}
	t.Logf("exec.Cmd beside the reaper: %d of 50 runs lost their child", lost)
}
