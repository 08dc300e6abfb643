// grpc-go reference for bench/bench_h2.sh: the same snowflake.v1.Snowflake
// service as snowflaked (proto/snowflake/v1/snowflake.proto) written the
// way a Go ID service usually is: grpc-go, the default layout (41-bit
// time since 2024-01-01, 10-bit machine id, 12-bit sequence) and a mutex.
//
// No generated code: the service descriptor is written out and the two
// messages are (un)marshalled with protowire, as generated code would.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	epochMs  = 1704067200000
	seqBits  = 12
	idBits   = 10
	maxBatch = 4096
)

type gen struct {
	mu      sync.Mutex
	machine uint64
	lastMs  int64
	seq     uint64
}

func (g *gen) next(ids []uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range ids {
		now := time.Now().UnixMilli() - epochMs
		if now < g.lastMs {
			now = g.lastMs
		}
		if now == g.lastMs {
			g.seq++
			if g.seq == 1<<seqBits {
				for now <= g.lastMs {
					now = time.Now().UnixMilli() - epochMs
				}
				g.seq = 0
			}
		} else {
			g.seq = 0
		}
		g.lastMs = now
		ids[i] = uint64(now)<<(seqBits+idBits) | g.machine<<seqBits | g.seq
	}
}

// nextRequest and nextReply are snowflake.v1.NextRequest / NextReply.
type nextRequest struct{ count uint32 }
type nextReply struct {
	ids       []uint64
	machineID uint32
}

// codec marshals the two messages with protowire ("proto" on the wire).
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) ([]byte, error) {
	r, ok := v.(*nextReply)
	if !ok {
		return nil, errors.New("unexpected message")
	}
	b := make([]byte, 0, 16+8*len(r.ids))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(8*len(r.ids)))
	for _, id := range r.ids {
		b = protowire.AppendFixed64(b, id)
	}
	if r.machineID != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.machineID))
	}
	return b, nil
}

func (codec) Unmarshal(b []byte, v any) error {
	r, ok := v.(*nextRequest)
	if !ok {
		return errors.New("unexpected message")
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			r.count = uint32(x)
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

type server struct{ g *gen }

func nextHandler(srv any, ctx context.Context, dec func(any) error,
	_ grpc.UnaryServerInterceptor) (any, error) {
	var req nextRequest
	if err := dec(&req); err != nil {
		return nil, err
	}
	n := req.count
	if n == 0 {
		n = 1
	}
	if n > maxBatch {
		return nil, status.Errorf(codes.InvalidArgument,
			"count must be in 1..%d", maxBatch)
	}
	g := srv.(*server).g
	rep := &nextReply{ids: make([]uint64, n), machineID: uint32(g.machine)}
	g.next(rep.ids)
	return rep, nil
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "snowflake.v1.Snowflake",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Next", Handler: nextHandler}},
	Metadata:    "snowflake/v1/snowflake.proto",
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	machine := flag.Uint64("machine-id", 1, "machine id")
	flag.Parse()
	encoding.RegisterCodec(codec{})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(&serviceDesc, &server{g: &gen{machine: *machine}})
	fmt.Printf("listening on %s\n", ln.Addr())
	log.Fatal(s.Serve(ln))
}
