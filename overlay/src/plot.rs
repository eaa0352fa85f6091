//! `--plot-fade-curve`: the configured curve and its points as a PNG.
//! (Stub: the render engineer owns it.)
