package cmd

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/lumengw/lumen/config"
)

// configFlag adds --config, bound to LUMEN_CONFIG.
func configFlag(fs *pflag.FlagSet, dst *string) {
	fs.StringVarP(dst, "config", "c", "", "config file (env LUMEN_CONFIG; default: the embedded example config)")
}

// newViper binds a command's flags and LUMEN_* environment variables.
func newViper(fs *pflag.FlagSet) *viper.Viper {
	v := viper.New()
	v.SetEnvPrefix("LUMEN")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	_ = v.BindPFlags(fs)
	return v
}

// loadConfig loads path, or LUMEN_CONFIG, or the embedded default.
func loadConfig(v *viper.Viper, f *Factory) (cfg *config.Config, source string, warnings []string, err error) {
	path := v.GetString("config")
	if path == "" {
		cfg, warnings, err = config.Parse(f.DefaultConfig)
		return cfg, "embedded config.example.yaml", warnings, err
	}
	cfg, warnings, err = config.Load(path)
	return cfg, path, warnings, err
}

// override applies flags and LUMEN_* variables over the file's settings
// (flag > env > file > default) and revalidates. A variable that does not
// read (LUMEN_PORT=abc) is an error naming it, never a silent zero; a
// duration reads as in the file (LUMEN_GRACE_PERIOD=60 is a minute).
func override(v *viper.Viper, cfg *config.Config) error {
	var problems []string
	if v.IsSet("host") {
		cfg.Server.Host = v.GetString("host")
	}
	if v.IsSet("port") {
		s := strings.TrimSpace(v.GetString("port"))
		if n, err := strconv.Atoi(s); err != nil {
			problems = append(problems, fmt.Sprintf("--port / LUMEN_PORT: %q is not a port number", s))
		} else {
			cfg.Server.Port = n
		}
	}
	if v.IsSet("log-level") {
		cfg.Log.Level = v.GetString("log-level")
	}
	if v.IsSet("log-format") {
		cfg.Log.Format = v.GetString("log-format")
	}
	if v.IsSet("grace-period") {
		if d, err := config.ParseDuration(strings.TrimSpace(v.GetString("grace-period"))); err != nil {
			problems = append(problems, "--grace-period / LUMEN_GRACE_PERIOD: "+err.Error())
		} else {
			cfg.Server.GracePeriod = d
		}
	}
	if p := append(problems, cfg.Validate()...); len(p) > 0 {
		return &config.Error{Problems: p}
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
