module vmlet.io/critest-standin

go 1.19
