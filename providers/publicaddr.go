package providers

import "net/netip"

// publicAddr reports whether a is an address on the public internet, one
// an image may be fetched from. Everything else is refused: this network,
// loopback, private, shared (CGNAT), link-local, benchmarking,
// documentation, multicast and reserved IPv4; and in IPv6 everything
// outside 2000::/3 (the only block of global unicast: unique local
// fc00::/7, link-local fe80::/10, multicast, IPv4-compatible ::/96,
// local-use NAT64 64:ff9b:1::/48 …) and the special blocks inside it
// (Teredo and the other IETF protocol assignments, documentation).
// An IPv6 address that carries an IPv4 one the network will reach is
// judged by that IPv4 address: IPv4-mapped ::ffff:0:0/96, NAT64's
// well-known prefix 64:ff9b::/96 (a NAT64 gateway turns
// [64:ff9b::a9fe:a9fe] into 169.254.169.254, the cloud metadata service)
// and 6to4 2002::/16.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is4() {
		for _, p := range special4 {
			if p.Contains(a) {
				return false
			}
		}
		return true
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return publicAddr(netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(a):
		return publicAddr(netip.AddrFrom4([4]byte(b[2:6])))
	case !global6.Contains(a): // a zoned address (fe80::1%eth0) is in no prefix: refused
		return false
	}
	for _, p := range special6 {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

var (
	// special4 are the IPv4 blocks of IANA's special-purpose registry that
	// are not globally reachable, with multicast and the reserved rest.
	special4 = prefixes(
		"0.0.0.0/8",       // this network (0.0.0.0 reaches the local host on Linux)
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // shared address space (carrier-grade NAT)
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local (cloud metadata at 169.254.169.254)
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation (TEST-NET-1)
		"192.88.99.0/24",  // 6to4 relay anycast (deprecated)
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation (TEST-NET-2)
		"203.0.113.0/24",  // documentation (TEST-NET-3)
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, and the broadcast 255.255.255.255
	)
	// global6 is IPv6 global unicast; all else is refused.
	global6 = netip.MustParsePrefix("2000::/3")
	// special6 are the blocks inside global6 that are not globally
	// reachable hosts.
	special6 = prefixes(
		"2001::/23",     // IETF protocol assignments: Teredo 2001::/32 (an IPv4 address inside), benchmarking, ORCHID
		"2001:db8::/32", // documentation
		"3fff::/20",     // documentation
	)
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // IPv4 address in the last 32 bits
	sixToFour = netip.MustParsePrefix("2002::/16")    // IPv4 address in bits 16 to 47
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}
