package main

import (
	"fmt"
	"os"
	"sync"
)

var logMu sync.Mutex

// logf writes one line to stderr, the guest console.
func logf(format string, args ...interface{}) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stderr, "vmlet-agent: "+format+"\n", args...)
}
