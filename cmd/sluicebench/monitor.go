package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// roundTrips counts the commands a gateway sends Redis while during runs
// (during returns how many requests it made), per request and command.
//
// INFO commandstats counts the commands a script runs as well as the
// script's own EVALSHA; MONITOR tells them apart ("[0 lua]"), so that what
// is counted here is what crosses the network: round trips, or more when
// commands are pipelined. MONITOR slows Redis down, so this runs in a
// phase of its own, after the timed ones.
func roundTrips(ctx context.Context, addr string, during func() int64) (map[string]float64, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 1<<20)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		return nil, fmt.Errorf("MONITOR: %q %v", line, err)
	}
	const marker = "sluicebench-monitor-end"
	counts := map[string]int64{}
	done := make(chan error, 1)
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				done <- err
				return
			}
			from, cmd, ok := parseMonitor(line)
			if !ok || from == "lua" {
				continue
			}
			if cmd == "echo" && strings.Contains(line, marker) {
				done <- nil
				return
			}
			counts[cmd]++
		}
	}()
	requests := during()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if err := rdb.Echo(ctx, marker).Err(); err != nil {
		return nil, err
	}
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("MONITOR: the end marker did not come back")
	}
	if requests == 0 {
		return nil, fmt.Errorf("no request made")
	}
	out := map[string]float64{}
	for cmd, n := range counts {
		out[cmd] = float64(n) / float64(requests)
	}
	return out, nil
}

// parseMonitor reads a MONITOR line,
//
//	+1733542800.123456 [0 127.0.0.1:53422] "evalsha" "9a0c..." "3" ...
//
// into who sent the command ("lua" for a script) and its lower-case name.
func parseMonitor(line string) (from, cmd string, ok bool) {
	open := strings.IndexByte(line, '[')
	end := strings.IndexByte(line, ']')
	if open < 0 || end < open {
		return "", "", false
	}
	fields := strings.Fields(line[open+1 : end])
	if len(fields) != 2 {
		return "", "", false
	}
	rest := strings.TrimSpace(line[end+1:])
	if !strings.HasPrefix(rest, `"`) {
		return "", "", false
	}
	name, _, found := strings.Cut(rest[1:], `"`)
	if !found {
		return "", "", false
	}
	return fields[1], strings.ToLower(name), true
}
