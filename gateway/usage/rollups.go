package usage

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Day is what one client used on one day (UTC).
type Day struct {
	Date         string `json:"date"` // 2006-01-02
	Client       string `json:"client"`
	Requests     int64  `json:"requests"`
	InputTokens  int64  `json:"input_tokens"`
	OutputTokens int64  `json:"output_tokens"`
	CachedTokens int64  `json:"cached_tokens"`
	Cost         int64  `json:"-"` // micro-dollars
	CostUSD      string `json:"cost_usd"`
}

// Rollups add records up per client and day.
type Rollups interface {
	// Add adds what clients used (Days, as Sum makes them of records).
	Add(ctx context.Context, days []Day) error
	// Read returns the days from..to (dates, inclusive) of one client, or
	// of every client when client is "", by date then client.
	Read(ctx context.Context, from, to time.Time, client string) ([]Day, error)
}

// ErrRange is a range of days Read cannot cover.
var ErrRange = errors.New("invalid range of days")

// MaxDays bounds the days one Read covers.
const MaxDays = 400

const dateLayout = "2006-01-02"

// days lists the dates from..to, at most MaxDays.
func days(from, to time.Time) ([]time.Time, error) {
	from, to = from.UTC().Truncate(24*time.Hour), to.UTC().Truncate(24*time.Hour)
	if to.Before(from) {
		return nil, fmt.Errorf("%w: it ends (%s) before it starts (%s)", ErrRange, to.Format(dateLayout), from.Format(dateLayout))
	}
	n := int(to.Sub(from)/(24*time.Hour)) + 1
	if n > MaxDays {
		return nil, fmt.Errorf("%w: it covers %d days, more than %d", ErrRange, n, MaxDays)
	}
	out := make([]time.Time, n)
	for i := range out {
		out[i] = from.Add(time.Duration(i) * 24 * time.Hour)
	}
	return out, nil
}

// Sum adds records up per date and client, into days.
func Sum(days map[[2]string]*Day, batch []Record) {
	for _, r := range batch {
		k := [2]string{r.Time.UTC().Format(dateLayout), r.Client}
		d := days[k]
		if d == nil {
			d = &Day{Date: k[0], Client: r.Client}
			days[k] = d
		}
		d.Requests++
		d.InputTokens += r.InputTokens
		d.OutputTokens += r.OutputTokens
		d.CachedTokens += r.CachedTokens
		d.Cost += r.Cost
	}
}

// Days sums records into days.
func Days(batch []Record) []Day {
	m := map[[2]string]*Day{}
	Sum(m, batch)
	out := make([]Day, 0, len(m))
	for _, d := range m {
		out = append(out, *d)
	}
	return out
}

// sorted orders days by date, then client, and fills in their dollars.
func sorted(ds []Day) []Day {
	slices.SortFunc(ds, func(a, b Day) int {
		if c := strings.Compare(a.Date, b.Date); c != 0 {
			return c
		}
		return strings.Compare(a.Client, b.Client)
	})
	for i := range ds {
		ds[i].CostUSD = Dollars(ds[i].Cost)
	}
	return ds
}

// RedisRollups keep the rollups in Redis, shared by every instance: one
// hash per day, <prefix>{use}:<yyyy-mm-dd>, with a field per client and
// count (n requests, i input, o output, k cached tokens, c micro-dollars):
// "c:team-a". Each expires Retention after its day.
type RedisRollups struct {
	Client    redis.Cmdable
	Prefix    string
	Retention time.Duration
}

func (r *RedisRollups) key(date string) string { return r.Prefix + "{use}:" + date }

// Add implements Rollups, in one pipelined round trip.
func (r *RedisRollups) Add(ctx context.Context, days []Day) error {
	if len(days) == 0 {
		return nil
	}
	_, err := r.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		dates := map[string]bool{}
		for _, d := range days {
			key := r.key(d.Date)
			for _, f := range []struct {
				kind string
				n    int64
			}{{"n", d.Requests}, {"i", d.InputTokens}, {"o", d.OutputTokens}, {"k", d.CachedTokens}, {"c", d.Cost}} {
				if f.n != 0 {
					p.HIncrBy(ctx, key, f.kind+":"+d.Client, f.n)
				}
			}
			dates[d.Date] = true
		}
		for date := range dates {
			p.PExpire(ctx, r.key(date), r.Retention+24*time.Hour)
		}
		return nil
	})
	return err
}

// Read implements Rollups, in one pipelined round trip.
func (r *RedisRollups) Read(ctx context.Context, from, to time.Time, client string) ([]Day, error) {
	ds, err := days(from, to)
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(ds))
	_, err = r.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, d := range ds {
			cmds[i] = p.HGetAll(ctx, r.key(d.Format(dateLayout)))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Day
	for i, cmd := range cmds {
		byClient := map[string]*Day{}
		for field, v := range cmd.Val() {
			kind, name, ok := strings.Cut(field, ":")
			if !ok || (client != "" && name != client) {
				continue
			}
			d := byClient[name]
			if d == nil {
				d = &Day{Date: ds[i].Format(dateLayout), Client: name}
				byClient[name] = d
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			switch kind {
			case "n":
				d.Requests = n
			case "i":
				d.InputTokens = n
			case "o":
				d.OutputTokens = n
			case "k":
				d.CachedTokens = n
			case "c":
				d.Cost = n
			}
		}
		for _, d := range byClient {
			out = append(out, *d)
		}
	}
	return sorted(out), nil
}

// MemoryRollups keep the rollups of one instance, Retention long.
type MemoryRollups struct {
	Retention time.Duration

	mu   sync.Mutex
	days map[string]map[string]*Day
}

// Add implements Rollups.
func (m *MemoryRollups) Add(_ context.Context, days []Day) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.days == nil {
		m.days = map[string]map[string]*Day{}
	}
	for _, d := range days {
		have := m.days[d.Date]
		if have == nil {
			have = map[string]*Day{}
			m.days[d.Date] = have
		}
		if h := have[d.Client]; h != nil {
			h.Requests += d.Requests
			h.InputTokens += d.InputTokens
			h.OutputTokens += d.OutputTokens
			h.CachedTokens += d.CachedTokens
			h.Cost += d.Cost
		} else {
			c := d
			have[d.Client] = &c
		}
	}
	oldest := time.Now().UTC().Add(-m.Retention - 24*time.Hour).Format(dateLayout)
	for date := range m.days {
		if date < oldest {
			delete(m.days, date)
		}
	}
	return nil
}

// Read implements Rollups.
func (m *MemoryRollups) Read(_ context.Context, from, to time.Time, client string) ([]Day, error) {
	ds, err := days(from, to)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Day
	for _, d := range ds {
		for name, day := range m.days[d.Format(dateLayout)] {
			if client == "" || name == client {
				out = append(out, *day)
			}
		}
	}
	return sorted(out), nil
}

// WriteCSV writes days as CSV, with a header row.
func WriteCSV(w io.Writer, days []Day) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"date", "client", "requests", "input_tokens", "output_tokens", "cached_tokens", "cost_usd"})
	for _, d := range days {
		_ = cw.Write([]string{d.Date, csvSafe(d.Client), strconv.FormatInt(d.Requests, 10), strconv.FormatInt(d.InputTokens, 10),
			strconv.FormatInt(d.OutputTokens, 10), strconv.FormatInt(d.CachedTokens, 10), Dollars(d.Cost)})
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
