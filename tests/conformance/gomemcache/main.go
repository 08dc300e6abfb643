// Command gomemcache-client speaks to a snowflaked memcached listener with
// github.com/bradfitz/gomemcache, the Go client most Go services use, and
// prints what it saw as one JSON object for
// tests/integration/test_memcache_clients.py to check: the IDs of single
// gets and of a multi-get, the cas value of each, and the error each
// refused or malformed call gave (none may hang: every call has a 5 s
// deadline, so a hang shows as an i/o timeout).
//
//	gomemcache-client 127.0.0.1:11212
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

type item struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Cas   uint64 `json:"cas"`
	Flags uint32 `json:"flags"`
}

type report struct {
	Get      []item            `json:"get"`
	Multi    []item            `json:"multi"`
	After    []item            `json:"after"`
	Errors   map[string]string `json:"errors"`
	MultiLen int               `json:"multi_len"`
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gomemcache-client host:port")
		os.Exit(2)
	}
	c := memcache.New(os.Args[1])
	c.Timeout = 5 * time.Second
	r := report{Errors: map[string]string{}}
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "gomemcache-client: %s: %v\n", what, err)
		os.Exit(1)
	}
	get := func(key string) item {
		it, err := c.Get(key)
		if err != nil {
			fail("Get "+key, err)
		}
		return item{it.Key, string(it.Value), it.CasID, it.Flags}
	}
	for _, k := range []string{"id", "id", "order:42"} {
		r.Get = append(r.Get, get(k))
	}
	keys := []string{"a", "b", "c", "user:7"}
	m, err := c.GetMulti(keys)
	if err != nil {
		fail("GetMulti", err)
	}
	r.MultiLen = len(m)
	for _, k := range keys {
		if it, ok := m[k]; ok {
			r.Multi = append(r.Multi, item{it.Key, string(it.Value), it.CasID, it.Flags})
		}
	}
	// What the client offers beyond get: Ping sends "version".
	r.Errors["ping"] = errText(c.Ping())
	// Refused or malformed calls: each must come back as an error.
	_, err = c.Get("bad key")
	r.Errors["bad_key"] = errText(err)
	_, err = c.Get(strings.Repeat("k", 251))
	r.Errors["long_key"] = errText(err)
	r.Errors["set"] = errText(c.Set(&memcache.Item{Key: "id", Value: []byte("1")}))
	r.Errors["add"] = errText(c.Add(&memcache.Item{Key: "id", Value: []byte("1")}))
	r.Errors["cas"] = errText(c.CompareAndSwap(&memcache.Item{Key: "id", Value: []byte("1"), CasID: 1}))
	_, err = c.Increment("id", 1)
	r.Errors["incr"] = errText(err)
	r.Errors["delete"] = errText(c.Delete("id"))
	r.Errors["touch"] = errText(c.Touch("id", 10))
	_, err = c.GetAndTouch("id", 10)
	r.Errors["gat"] = errText(err)
	r.Errors["flush_all"] = errText(c.FlushAll())
	// More keys than the node's MAX_BATCH (the test sets it to 8).
	many := make([]string, 9)
	for i := range many {
		many[i] = "k" + strconv.Itoa(i)
	}
	_, err = c.GetMulti(many)
	r.Errors["too_many"] = errText(err)
	// The client still works after all of that.
	r.After = append(r.After, get("id"))
	out, err := json.Marshal(r)
	if err != nil {
		fail("json", err)
	}
	fmt.Println(string(out))
}
