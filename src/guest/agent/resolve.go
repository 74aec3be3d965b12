package main

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"
)

const maxSymlinkHops = 40

// resolveIn resolves the absolute path p inside root the way the kernel would after chroot(root):
// symlinks (absolute ones too) are followed relative to root and ".." never climbs above it.
// It returns the host path. With mkdirs, missing directories before the last component are
// created (0755). When the last component (after following) is missing, it returns the host path
// it would have, with an error that satisfies os.IsNotExist.
func resolveIn(root, p string, followLast, mkdirs bool) (string, error) {
	resolved := "" // in-root path so far, "" = the root
	pending := splitPath(p)
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		if c == ".." {
			resolved = path.Dir("/" + resolved)
			if resolved == "/" {
				resolved = ""
			}
			continue
		}
		next := resolved + "/" + c
		last := len(pending) == 0
		fi, err := os.Lstat(root + next)
		if err != nil {
			if !os.IsNotExist(err) {
				return "", err
			}
			if last {
				return root + next, err
			}
			if !mkdirs {
				return "", err
			}
			if err := os.Mkdir(root+next, 0o755); err != nil && !os.IsExist(err) {
				return "", err
			}
			resolved = next
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 && (!last || followLast) {
			if hops++; hops > maxSymlinkHops {
				return "", &os.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(root + next)
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				resolved = ""
			}
			pending = append(splitPath(target), pending...)
			continue
		}
		if !last && !fi.IsDir() {
			return "", &os.PathError{Op: "resolve", Path: p, Err: syscall.ENOTDIR}
		}
		resolved = next
	}
	return root + resolved, nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func envGet(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if strings.HasPrefix(env[i], key+"=") {
			return env[i][len(key)+1:], true
		}
	}
	return "", false
}

// mergeEnv returns base with over's variables added, a variable in over replacing base's.
func mergeEnv(base, over []string) []string {
	keys := map[string]bool{}
	for _, kv := range over {
		keys[strings.SplitN(kv, "=", 2)[0]] = true
	}
	out := make([]string, 0, len(base)+len(over))
	for _, kv := range base {
		if !keys[strings.SplitN(kv, "=", 2)[0]] {
			out = append(out, kv)
		}
	}
	return append(out, over...)
}

// lookPath finds file in the rootfs the way execvp would inside it and returns the in-root path
// to exec (not the symlink-resolved one: after chroot the kernel follows the links itself).
func lookPath(root, file string, env []string, cwd string) (string, error) {
	notFound := fmt.Errorf("exec: %q: executable file not found in $PATH", file)
	if file == "" {
		return "", notFound
	}
	if strings.Contains(file, "/") {
		p := file
		if !strings.HasPrefix(p, "/") {
			p = path.Join(cwd, p)
		}
		if err := executableIn(root, p); err != nil {
			return "", fmt.Errorf("exec: %q: stat %s: %v", file, file, errText(err))
		}
		return p, nil
	}
	pathEnv, ok := envGet(env, "PATH")
	if !ok {
		pathEnv = defaultPath
	}
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		if !strings.HasPrefix(dir, "/") {
			dir = path.Join(cwd, dir)
		}
		p := path.Join(dir, file)
		if executableIn(root, p) == nil {
			return p, nil
		}
	}
	return "", notFound
}

func executableIn(root, p string) error {
	hp, err := resolveIn(root, p, true, false)
	if err != nil {
		return err
	}
	fi, err := os.Stat(hp)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return syscall.EISDIR
	}
	if fi.Mode()&0o111 == 0 {
		return syscall.EACCES
	}
	return nil
}

func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
