package placeholder

import "testing"

func TestDollar(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT 1":                          "SELECT 1",
		"INSERT INTO t VALUES (?, ?, ?)":    "INSERT INTO t VALUES ($1, $2, $3)",
		"WHERE a = ? AND (b, c) < (?, ?) ?": "WHERE a = $1 AND (b, c) < ($2, $3) $4",
	} {
		if got := Dollar(in); got != want {
			t.Errorf("Dollar(%q) = %q, want %q", in, got, want)
		}
	}
}
