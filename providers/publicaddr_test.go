package providers

import (
	"net/netip"
	"testing"
)

func TestPublicAddr(t *testing.T) {
	tests := []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"100.63.255.255", true}, // just below shared address space
		{"100.128.0.0", true},    // just above it
		{"198.17.255.255", true},
		{"198.20.0.0", true},
		{"223.255.255.255", true},
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001:80b::200e", true},
		{"::ffff:8.8.8.8", true},    // IPv4-mapped public
		{"64:ff9b::808:808", true},  // NAT64 of 8.8.8.8
		{"2002:808:808::1", true},   // 6to4 of 8.8.8.8
		{"2001:200::1", true},       // just above 2001::/23
		{"0.0.0.0", false},          // this host
		{"0.1.2.3", false},          // this network
		{"10.1.2.3", false},         // private
		{"100.64.0.1", false},       // CGNAT
		{"100.127.255.254", false},  // CGNAT
		{"127.0.0.1", false},        // loopback
		{"127.1.2.3", false},        // loopback
		{"169.254.169.254", false},  // link-local: cloud metadata
		{"172.16.0.1", false},       // private
		{"172.31.255.255", false},   // private
		{"192.0.0.8", false},        // IETF protocol assignments
		{"192.0.2.1", false},        // documentation
		{"192.88.99.1", false},      // 6to4 relay anycast
		{"192.168.1.1", false},      // private
		{"198.18.0.1", false},       // benchmarking
		{"198.19.255.254", false},   // benchmarking
		{"198.51.100.7", false},     // documentation
		{"203.0.113.9", false},      // documentation
		{"224.0.0.251", false},      // multicast (mDNS)
		{"239.255.255.250", false},  // multicast (SSDP)
		{"240.0.0.1", false},        // reserved
		{"255.255.255.255", false},  // broadcast
		{"::", false},               // unspecified
		{"::1", false},              // loopback
		{"::127.0.0.1", false},      // IPv4-compatible (deprecated)
		{"::ffff:127.0.0.1", false}, // IPv4-mapped loopback
		{"::ffff:169.254.169.254", false},
		{"::ffff:100.64.0.1", false},
		{"::ffff:0:127.0.0.1", false}, // IPv4-translated (SIIT)
		{"64:ff9b::7f00:1", false},    // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
		{"64:ff9b::a00:1", false},     // NAT64 of 10.0.0.1
		{"64:ff9b::6440:1", false},    // NAT64 of 100.64.0.1
		{"64:ff9b:1::a9fe:a9fe", false},
		{"64:ff9b:1:ffff::1", false},                    // local-use NAT64: its IPv4 may sit anywhere
		{"2002:7f00:1::", false},                        // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", false},                    // 6to4 of 169.254.169.254
		{"2002:c0a8:101::1", false},                     // 6to4 of 192.168.1.1
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false}, // Teredo
		{"2001:2::1", false},                            // benchmarking
		{"2001:db8::1", false},                          // documentation
		{"3fff::1", false},                              // documentation
		{"100::1", false},                               // discard-only
		{"fc00::1", false},                              // unique local
		{"fd12:3456:789a::1", false},                    // unique local
		{"fe80::1", false},                              // link-local
		{"fe80::1%eth0", false},                         // link-local, zoned
		{"fec0::1", false},                              // site-local (deprecated)
		{"ff02::1", false},                              // multicast
		{"ff0e::1", false},                              // multicast, global scope
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := publicAddr(netip.MustParseAddr(tt.addr)); got != tt.public {
				t.Errorf("publicAddr(%s) = %v, want %v", tt.addr, got, tt.public)
			}
		})
	}
}
