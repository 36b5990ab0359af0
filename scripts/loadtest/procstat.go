package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is sysconf(_SC_CLK_TCK) on Linux, the unit of utime and stime
// in /proc/<pid>/stat; it is 100 on every Linux ABI Go supports.
const clockTicks = 100

// ProcSample is what /proc tells about one process at one moment.
type ProcSample struct {
	RSS int64         // VmRSS, bytes
	CPU time.Duration // utime + stime
	// Syscalls is read- plus write-type system calls (syscr + syscw of
	// /proc/<pid>/io, all threads): unlike CPU time, a count that the
	// machine's other work does not disturb. 0 if /proc/<pid>/io cannot be
	// read (another user's process).
	Syscalls int64
}

// readProc reads VmRSS from /proc/<pid>/status and utime+stime from
// /proc/<pid>/stat.
func readProc(pid int) (ProcSample, error) {
	var s ProcSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest))
			if len(f) != 2 || f[1] != "kB" {
				return s, fmt.Errorf("pid %d: odd VmRSS line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return s, fmt.Errorf("pid %d: VmRSS: %w", pid, err)
			}
			s.RSS = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	s.CPU, err = parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		s.Syscalls = parseIOSyscalls(io)
	}
	return s, nil
}

// parseIOSyscalls returns syscr + syscw from the text of /proc/<pid>/io.
func parseIOSyscalls(io []byte) int64 {
	var n int64
	for line := range bytes.Lines(io) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(": "))
		if ok && (string(k) == "syscr" || string(k) == "syscw") {
			x, _ := strconv.ParseInt(string(v), 10, 64)
			n += x
		}
	}
	return n
}

// parseStatCPU returns utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no ')'")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// readProcs sums readProc over pids (one per server instance).
func readProcs(pids []int) (ProcSample, error) {
	var sum ProcSample
	for _, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			return sum, err
		}
		sum.RSS += s.RSS
		sum.CPU += s.CPU
		sum.Syscalls += s.Syscalls
	}
	return sum, nil
}

// MachineSample is the whole machine's CPU time from /proc/stat.
type MachineSample struct {
	Busy  time.Duration // user+nice+system+irq+softirq+steal, all CPUs
	Steal time.Duration // taken by the hypervisor for other guests
}

// readMachine reads the first line of /proc/stat.
func readMachine() (MachineSample, error) {
	var m MachineSample
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	// cpu user nice system idle iowait irq softirq steal guest guest_nice
	if len(f) < 9 || f[0] != "cpu" {
		return m, fmt.Errorf("/proc/stat: odd first line %q", line)
	}
	tick := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * time.Second / clockTicks
	}
	m.Busy = tick(1) + tick(2) + tick(3) + tick(6) + tick(7) + tick(8)
	m.Steal = tick(8)
	return m, nil
}
