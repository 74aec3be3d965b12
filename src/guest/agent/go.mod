module vmlet.io/agent

go 1.19
