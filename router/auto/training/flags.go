package training

import "flag"

// FitFlags defines the fit's tuning flags on fs, writing into cfg, so
// `lumen route train` and `go run ./router/auto/train` take the same ones.
// Zero values mean the defaults named in each flag's help.
func FitFlags(fs *flag.FlagSet, cfg *Config) {
	fs.IntVar(&cfg.BucketBits, "bucket-bits", 0, "log2 of hashed rows (default 15)")
	fs.IntVar(&cfg.K, "k", 0, "prompt embedding width for the per-model residual (default 4, -1 for none)")
	fs.IntVar(&cfg.Epochs, "epochs", 0, "epochs (default 2)")
	fs.IntVar(&cfg.Average, "average", 0, "average this many snapshots of the parameters taken through the last epoch (0 = none)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed (default 1)")
	fs.Float64Var(&cfg.LR, "lr", 0, "AdaGrad step for prompt weights (default 0.05)")
	fs.Float64Var(&cfg.L2, "l2", 0, "weight decay of prompt weights (default 1e-5)")
	fs.Float64Var(&cfg.ModelLR, "model-lr", 0, "AdaGrad step for per-model parameters (default 0.05)")
	fs.BoolVar(&cfg.SharedAbility, "shared-ability", false, "fit per-domain abilities as the model's overall ability plus a shrunk deviation")
	fs.Float64Var(&cfg.DomainShrink, "domain-shrink", 0, "with --shared-ability: weight decay pulling per-domain abilities to the overall one (default 1e-3)")
	fs.Float64Var(&cfg.ResidualL2, "residual-l2", 0, "weight decay of the per-model residual weights (default 1e-4)")
	fs.Float64Var(&cfg.ResidualTasks, "residual-tasks", 0, "shrink a model's residual by n/(n+c), n its task count (c; 0 = none)")
	fs.Float64Var(&cfg.ResidualDropout, "residual-dropout", 0, "share of training examples fit without the residual u·z (0 = none)")
	fs.Float64Var(&cfg.ResidualInit, "residual-init", 0, "standard deviation of the initial per-model residual weights (default 0.3)")
	fs.Float64Var(&cfg.TaskCentre, "task-centre", 0, "fit the residual on task-centred z and pull task means of z to zero with this weight (0 = off)")
	fs.IntVar(&cfg.TaskDims, "task-dims", 0, "task-identity component: sketch width (power of two; default 4096, -1 = no task component)")
	fs.Float64Var(&cfg.TaskShrink, "task-shrink", 0, "shrink of a task's model offsets towards the scorer's mean, c in n/(n+c) (default 10)")
	fs.StringVar(&cfg.TaskObjective, "task-objective", "", "what the task blend's shape is fitted to: apgr (default: APGR of the two-model views on known plus unseen tasks, never losing unseen APGR), logloss, or gain (squared error of pairwise predicted gains)")
	fs.StringVar(&cfg.TaskMatch, "task-match", "", "how a prompt's task is recognised: classifier (default: softmax regression over the sketch, gated on its confidence) or centroid (cosine to each task's mean sketch)")
	fs.IntVar(&cfg.TaskEpochs, "task-epochs", 0, "epochs of the task classifier's fit (default 8)")
	fs.Float64Var(&cfg.TaskL2, "task-l2", 0, "weight decay of the task classifier's fit (default 1e-4)")
	fs.IntVar(&cfg.TaskFolds, "task-folds", 0, "inner splits the task blend's shape is fitted on, each task held out in one (default 5)")
	fs.BoolVar(&cfg.TaskMargin, "task-margin", false, "with --task-match centroid: gate the task blend on the nearest task's lead over the second nearest (default: on its similarity)")
}
