package main

// sysSetns is setns(2)'s number (the Go 1.19 syscall package has none for amd64).
const sysSetns = 308
