package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ClusterNodeTimeout is the cluster-node-timeout of a Cluster, and
// SentinelDownAfter the down-after-milliseconds of a Sentinel's master: how
// long a master may be silent before its replica may take over.
const (
	ClusterNodeTimeout = 2 * time.Second
	SentinelDownAfter  = time.Second
)

// A Cluster is a Redis Cluster on 127.0.0.1: masters that share the 16384
// slots in even ranges, each with its replicas.
type Cluster struct {
	t     testing.TB
	Nodes []*Server // the masters first, then the replicas, as started
}

// StartCluster starts a Cluster of masters masters with replicas replicas
// each, with cluster-node-timeout ClusterNodeTimeout, and waits until every
// node reports the cluster ok and every replica is in sync. Its nodes stop
// when t ends.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	for range masters * (1 + replicas) {
		c.Nodes = append(c.Nodes, Start(t, "--repl-diskless-sync-delay", "0",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds()))))
	}
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		ids[i] = n.Must("CLUSTER", "MYID").(string)
		n.Must("CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1))
	}
	for i := range masters {
		lo, hi := i*16384/masters, (i+1)*16384/masters-1
		c.Nodes[i].Must("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi))
	}
	for _, n := range c.Nodes[1:] {
		n.Must("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(c.Nodes[0].port))
	}
	c.waitFor("every node to know every other", 20*time.Second, func() bool {
		for _, n := range c.Nodes {
			nodes, err := Str(n.Addr(), time.Second, "CLUSTER", "NODES")
			if err != nil || strings.Count(strings.TrimSpace(nodes), "\n")+1 != len(c.Nodes) || strings.Contains(nodes, "handshake") {
				return false
			}
		}
		return true
	})
	for i, n := range c.Nodes[masters:] {
		if _, err := n.Do("CLUSTER", "REPLICATE", ids[i%masters]); err != nil {
			t.Fatalf("CLUSTER REPLICATE: %v", err)
		}
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

// Addrs returns the host:port of every node, for ClusterOptions.Addrs.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// WaitHealthy waits until every running node reports cluster_state:ok, and
// every running replica's link to its master is up and in sync.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	c.waitFor("the cluster to be healthy", timeout, func() bool {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			if info, err := Str(n.Addr(), time.Second, "CLUSTER", "INFO"); err != nil || infoField(info, "cluster_state") != "ok" {
				return false
			}
			if n.Info("replication", "role") == "slave" &&
				(n.Info("replication", "master_link_status") != "up" || n.Info("replication", "master_sync_in_progress") != "0") {
				return false
			}
		}
		return true
	})
}

func (c *Cluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			var state []string
			for _, n := range c.Nodes {
				nodes, err := Str(n.Addr(), time.Second, "CLUSTER", "NODES")
				state = append(state, fmt.Sprintf("%s: %v %s", n.Addr(), err, nodes))
			}
			c.t.Fatalf("waited %v for %s:\n%s", timeout, what, strings.Join(state, "\n"))
		}
	}
}

// Slot returns the hash slot of key (CLUSTER KEYSLOT).
func (c *Cluster) Slot(key string) int {
	c.t.Helper()
	for _, n := range c.Nodes {
		if r, err := n.Do("CLUSTER", "KEYSLOT", key); err == nil {
			return int(r.(int64))
		}
	}
	c.t.Fatal("CLUSTER KEYSLOT: no node answers")
	return 0
}

// MasterOf returns the node that serves slot as its master, as a running,
// unpaused node that claims it says; nil if none does.
func (c *Cluster) MasterOf(slot int) *Server {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		r, err := Do(n.Addr(), time.Second, "CLUSTER", "SLOTS")
		if err != nil {
			continue
		}
		for _, rng := range r.([]any) {
			rng := rng.([]any)
			if lo, hi := rng[0].(int64), rng[1].(int64); int64(slot) < lo || int64(slot) > hi {
				continue
			}
			port := rng[2].([]any)[1].(int64)
			for _, m := range c.Nodes {
				if int64(m.port) == port {
					return m
				}
			}
		}
		return nil
	}
	return nil
}

// ID returns the node's cluster id (CLUSTER MYID).
func (c *Cluster) ID(n *Server) string {
	c.t.Helper()
	return n.Must("CLUSTER", "MYID").(string)
}

// MoveSlot moves slot from its master from to the master to, as a reshard
// does (CLUSTER SETSLOT IMPORTING and MIGRATING, MIGRATE, SETSLOT NODE),
// one key at a time, waiting pause after each: while a slot's keys are
// split between two nodes, a command on several of them gets TRYAGAIN.
func (c *Cluster) MoveSlot(slot int, from, to *Server, pause time.Duration) {
	c.t.Helper()
	sl := strconv.Itoa(slot)
	fromID, toID := c.ID(from), c.ID(to)
	to.Must("CLUSTER", "SETSLOT", sl, "IMPORTING", fromID)
	from.Must("CLUSTER", "SETSLOT", sl, "MIGRATING", toID)
	for {
		keys := from.Must("CLUSTER", "GETKEYSINSLOT", sl, "10").([]any)
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			from.Must("MIGRATE", "127.0.0.1", strconv.Itoa(to.port), k.(string), "0", "5000")
			time.Sleep(pause)
		}
	}
	for _, n := range c.Nodes {
		if n.Running() && n.Info("replication", "role") == "master" {
			n.Must("CLUSTER", "SETSLOT", sl, "NODE", toID)
		}
	}
}

// ReplicaOf returns a running replica of master.
func (c *Cluster) ReplicaOf(master *Server) *Server {
	c.t.Helper()
	for _, n := range c.Nodes {
		if n != master && n.Running() && n.Info("replication", "role") == "slave" &&
			n.Info("replication", "master_port") == strconv.Itoa(master.port) {
			return n
		}
	}
	c.t.Fatalf("no replica of %s", master.Addr())
	return nil
}

// WaitMaster waits until node reports itself a master, and returns when; or
// the zero time after timeout. It may run on any goroutine.
func WaitMaster(node *Server, timeout time.Duration) time.Time {
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		if node.Info("replication", "role") == "master" {
			return time.Now()
		}
		if time.Now().After(deadline) {
			return time.Time{}
		}
	}
}

// A Sentinel is a master and one replica, watched by three Sentinels, on
// 127.0.0.1, with down-after-milliseconds SentinelDownAfter, a quorum of
// two, and failover-timeout 3 s (so that failovers may follow each other
// 6 s apart).
type Sentinel struct {
	t         testing.TB
	Name      string    // the master's name: "mymaster"
	Master    *Server   // the master when started
	Replica   *Server   // its replica when started
	Sentinels []*Server // the three Sentinels
}

// StartSentinel starts a Sentinel deployment, and waits until every
// Sentinel knows the replica and the other Sentinels. Its processes stop
// when t ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t, Name: "mymaster"}
	s.Master = Start(t, "--repl-diskless-sync-delay", "0")
	s.Replica = Start(t, "--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.port))
	for range 3 {
		sen := newServer(t, nil, func(sen *Server) {
			sen.conf = filepath.Join(sen.dir, "sentinel.conf")
			conf := fmt.Sprintf("port %d\nsentinel monitor %s 127.0.0.1 %d 2\n"+
				"sentinel down-after-milliseconds %[2]s %[4]d\nsentinel failover-timeout %[2]s 3000\n",
				sen.port, s.Name, s.Master.port, SentinelDownAfter.Milliseconds())
			if err := os.WriteFile(sen.conf, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
		})
		s.Sentinels = append(s.Sentinels, sen)
	}
	for deadline := time.Now().Add(30 * time.Second); !s.ready(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Sentinels do not know the replica and each other after 30 s")
		}
	}
	return s
}

func (s *Sentinel) ready() bool {
	if s.Replica.Info("replication", "master_link_status") != "up" {
		return false
	}
	for _, sen := range s.Sentinels {
		r, err := sen.Do("SENTINEL", "MASTER", s.Name)
		if err != nil {
			return false
		}
		fields := r.([]any)
		m := make(map[string]string)
		for i := 0; i+1 < len(fields); i += 2 {
			m[fields[i].(string)], _ = fields[i+1].(string)
		}
		if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" || !strings.Contains(m["flags"], "master") || strings.Contains(m["flags"], "down") {
			return false
		}
	}
	return true
}

// Addrs returns the Sentinels' host:port, for FailoverOptions.SentinelAddrs.
func (s *Sentinel) Addrs() []string {
	var out []string
	for _, sen := range s.Sentinels {
		out = append(out, sen.Addr())
	}
	return out
}

// MasterAddr returns the master's host:port as the first Sentinel that
// answers says.
func (s *Sentinel) MasterAddr() string {
	for _, sen := range s.Sentinels {
		r, err := sen.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name)
		if err == nil {
			a := r.([]any)
			return a[0].(string) + ":" + a[1].(string)
		}
	}
	return ""
}

// Failover asks a Sentinel for a failover (SENTINEL FAILOVER), as an
// operator would.
func (s *Sentinel) Failover() {
	s.t.Helper()
	s.Sentinels[0].Must("SENTINEL", "FAILOVER", s.Name)
}

// Current returns the server that the Sentinels name as the master.
func (s *Sentinel) Current() *Server {
	s.t.Helper()
	addr := s.MasterAddr()
	for _, n := range []*Server{s.Master, s.Replica} {
		if n.Addr() == addr {
			return n
		}
	}
	s.t.Fatalf("the Sentinels name %q, neither of the servers", addr)
	return nil
}

// Other returns the server of the two that n is not.
func (s *Sentinel) Other(n *Server) *Server {
	if n == s.Master {
		return s.Replica
	}
	return s.Master
}

// Follow makes node a replica of master (REPLICAOF), as the Sentinels do,
// in time, with an old master that comes back; and waits until it is in
// sync.
func Follow(t testing.TB, node, master *Server) {
	t.Helper()
	node.Must("REPLICAOF", "127.0.0.1", strconv.Itoa(master.port))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if node.Info("replication", "master_link_status") == "up" && node.Info("replication", "master_sync_in_progress") == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not in sync with %s after 20 s", node.Addr(), master.Addr())
		}
	}
}
