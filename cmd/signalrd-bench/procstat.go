package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It is 100 on every Linux
// architecture Go supports (sysconf would need cgo).
const clockTicks = 100

var errProcFormat = errors.New("bench: unexpected /proc format")

// procSample is one reading of a process's CPU time and resident set.
type procSample struct {
	CPUTicks uint64 // utime + stime
	RSSBytes int64
}

// readProc samples /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("read proc stat: %w", err)
	}
	ticks, err := parseStatCPU(string(stat))
	if err != nil {
		return procSample{}, err
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("read proc status: %w", err)
	}
	defer f.Close()
	rss, err := parseStatusRSS(f)
	if err != nil {
		return procSample{}, err
	}
	return procSample{CPUTicks: ticks, RSSBytes: rss}, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15) of a /proc/<pid>/stat line. The command
// name (field 2) may contain spaces and parentheses, so fields are counted after the last ')'.
func parseStatCPU(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse proc stat: no ')': %w", errProcFormat)
	}
	fields := strings.Fields(stat[i+1:])
	// fields[0] is field 3 (state); utime is field 14 → index 11, stime index 12.
	if len(fields) < 13 {
		return 0, fmt.Errorf("parse proc stat: %d fields: %w", len(fields)+2, errProcFormat)
	}
	ut, err1 := strconv.ParseUint(fields[11], 10, 64)
	st, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse proc stat: %w: %w", errProcFormat, err)
	}
	return ut + st, nil
}

// parseStatusRSS returns VmRSS of /proc/<pid>/status in bytes.
func parseStatusRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		kb, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB"))
		n, err := strconv.ParseInt(kb, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse proc status VmRSS: %w: %w", errProcFormat, err)
		}
		return n * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("parse proc status: %w", err)
	}
	return 0, fmt.Errorf("parse proc status: no VmRSS: %w", errProcFormat)
}

// cpuPercent is the CPU used between two samples over wall seconds (100 = one core busy).
func cpuPercent(a, b procSample, seconds float64) float64 {
	if seconds <= 0 || b.CPUTicks < a.CPUTicks {
		return 0
	}
	return float64(b.CPUTicks-a.CPUTicks) / clockTicks / seconds * 100
}

// machineInfo describes the host for the report.
type machineInfo struct {
	CPUModel string `json:"cpu_model"`
	Cores    int    `json:"cores"`
	MemBytes int64  `json:"mem_bytes"`
	Kernel   string `json:"kernel,omitempty"`
}

// parseCPUInfo returns the first "model name" and the number of "processor" entries.
func parseCPUInfo(r io.Reader) (model string, cores int) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			cores++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		}
	}
	return model, cores
}

// parseMemTotal returns MemTotal of /proc/meminfo in bytes.
func parseMemTotal(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse meminfo: %w: %w", errProcFormat, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("parse meminfo: no MemTotal: %w", errProcFormat)
}

func readMachine() machineInfo {
	var m machineInfo
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.CPUModel, m.Cores = parseCPUInfo(f)
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		m.MemBytes, _ = parseMemTotal(f)
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func readProcSelf() (procSample, error) { return readProc(os.Getpid()) }
