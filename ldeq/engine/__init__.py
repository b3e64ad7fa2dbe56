"""Layer 1, the DEQ engine (knows nothing of faces): root solvers and the DEQ layer with its implicit / JFB backward."""
