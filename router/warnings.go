package router

import (
	"fmt"
	"sort"
)

// Warnings are what the built router cannot do as the config may expect;
// serve, a reload and `lumen config validate` print them. They are:
//   - a deployment that no price reaches (not in the embedded table, no
//     model_info prices, not a local provider): its calls cost 0 in the
//     ledger, so budgets do not stop its spend;
//   - an auto route's candidates of unknown ability (autoWarnings).
func (r *Router) Warnings() []string {
	return append(r.priceWarnings(), r.autoWarnings()...)
}

func (r *Router) priceWarnings() []string {
	names := make([]string, 0, len(r.groups))
	for name := range r.groups {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		for _, d := range r.groups[name].Deployments {
			if !d.Priced {
				out = append(out, fmt.Sprintf("deployment %q (%s): no known price, so its calls cost 0 in the ledger and budgets do not limit them; set model_info.input_cost_per_token and output_cost_per_token, or base_model to a priced model",
					d.ID, d.Name()))
			}
		}
	}
	return out
}
