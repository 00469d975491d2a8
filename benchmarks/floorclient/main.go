// Command floorclient is the benchmark's protocol floor: the least a registry client can do to
// copy images between registries, compiled, with nothing else in it.
//
//	floorclient copy SRC_HOST SRC_REPO DST_HOST DST_REPO [TAG...]
//	floorclient mount HOST SRC_REPO DST_REPO TAG...
//
// copy moves the given tags (all tags of SRC_REPO when none is given) over plain HTTP: one
// manifest GET per tag, one GET, POST and PUT per distinct blob (held in memory, its digest
// checked), one manifest PUT per tag; eight tags at a time, every blob of a tag at once. Made
// for images of many small blobs (a sync), where the registries' work per request bounds the
// time: holding a large layer in memory makes it no floor for those.
// mount does the same within one registry with a cross-repository mount per blob instead of
// moving it. There is no authentication, no retry, no cache, no policy, no progress: whatever a
// real client takes beyond this is its own cost, not the protocol's or the registry's.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
)

const accept = "application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json"

// parallelTags is how many tags are copied at once (the registries' two cores are the limit).
const parallelTags = 8

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

type descriptor struct {
	Digest string `json:"digest"`
}

type manifest struct {
	Config descriptor   `json:"config"`
	Layers []descriptor `json:"layers"`
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "floorclient:", err)
	os.Exit(1)
}

// send does one request and returns the body of an answer with status want.
func send(method, target string, body []byte, header map[string]string, want int) (*http.Response, []byte) {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, target, reader)
	if err != nil {
		fail(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		fail(err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		fail(err)
	}
	if resp.StatusCode != want {
		fail(fmt.Errorf("%s %s: %d %s", method, target, resp.StatusCode, data))
	}
	return resp, data
}

// onceEach runs work once per key; later callers wait for the first.
type onceEach struct {
	mu   sync.Mutex
	done map[string]chan struct{}
}

func (o *onceEach) do(key string, work func()) {
	o.mu.Lock()
	ch, seen := o.done[key]
	if seen {
		o.mu.Unlock()
		<-ch
		return
	}
	ch = make(chan struct{})
	o.done[key] = ch
	o.mu.Unlock()
	defer close(ch)
	work()
}

func main() {
	if len(os.Args) < 5 {
		fail(fmt.Errorf("usage: floorclient copy SRC_HOST SRC_REPO DST_HOST DST_REPO [TAG...] | mount HOST SRC_REPO DST_REPO TAG..."))
	}
	var src, dst string
	var tags []string
	switch os.Args[1] {
	case "copy":
		if len(os.Args) < 6 {
			fail(fmt.Errorf("copy needs SRC_HOST SRC_REPO DST_HOST DST_REPO"))
		}
		src = "http://" + os.Args[2] + "/v2/" + os.Args[3] + "/"
		dst = "http://" + os.Args[4] + "/v2/" + os.Args[5] + "/"
		tags = os.Args[6:]
	case "mount":
		src = "http://" + os.Args[2] + "/v2/" + os.Args[3] + "/"
		dst = "http://" + os.Args[2] + "/v2/" + os.Args[4] + "/"
		tags = os.Args[5:]
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
	mount := os.Args[1] == "mount"
	if len(tags) == 0 {
		_, data := send("GET", src+"tags/list", nil, nil, 200)
		var list struct{ Tags []string }
		if err := json.Unmarshal(data, &list); err != nil {
			fail(err)
		}
		tags = list.Tags
	}
	blobs := &onceEach{done: map[string]chan struct{}{}}
	copyBlob := func(digest string) {
		if mount {
			q := url.Values{"mount": {digest}, "from": {os.Args[3]}}
			send("POST", dst+"blobs/uploads/?"+q.Encode(), nil, nil, 201)
			return
		}
		_, data := send("GET", src+"blobs/"+digest, nil, nil, 200)
		sum := sha256.Sum256(data)
		if "sha256:"+hex.EncodeToString(sum[:]) != digest {
			fail(fmt.Errorf("blob %s: wrong digest", digest))
		}
		resp, _ := send("POST", dst+"blobs/uploads/", nil, nil, 202)
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			fail(err)
		}
		q := loc.Query()
		q.Set("digest", digest)
		loc.RawQuery = q.Encode()
		send("PUT", loc.String(), data, map[string]string{"Content-Type": "application/octet-stream"}, 201)
	}
	slots := make(chan struct{}, parallelTags)
	var all sync.WaitGroup
	for _, tag := range tags {
		tag := tag
		all.Add(1)
		slots <- struct{}{}
		go func() {
			defer all.Done()
			defer func() { <-slots }()
			resp, raw := send("GET", src+"manifests/"+tag, nil, map[string]string{"Accept": accept}, 200)
			var m manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				fail(fmt.Errorf("manifest %s: %v", tag, err))
			}
			var each sync.WaitGroup
			for _, d := range append([]descriptor{m.Config}, m.Layers...) {
				digest := d.Digest
				each.Add(1)
				go func() {
					defer each.Done()
					blobs.do(digest, func() { copyBlob(digest) })
				}()
			}
			each.Wait()
			header := map[string]string{"Content-Type": resp.Header.Get("Content-Type")}
			send("PUT", dst+"manifests/"+tag, raw, header, 201)
		}()
	}
	all.Wait()
}
