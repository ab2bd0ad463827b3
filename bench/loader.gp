# bench/loader.gp — the loader plot of `make bench` (bench/report.py calls it).
# gnuplot -e "dat='loader.dat'; out='x.png'; machine='...'" bench/loader.gp
# dat: five blocks (gnuplot indexes 0-4): streamtrain zstd, png, raw, then
# PyTorch PNG folder and TensorDataset; columns: threads-or-workers,
# median, min, max samples/s (second epoch).
set terminal pngcairo size 800,560 font "Sans,10"
set output out
set title "Loader throughput, Fashion-MNIST 28×28, batch 256, second epoch\n(median of 3 runs, bars min–max; ".machine.")"
set xlabel "producer threads (streamtrain)  /  DataLoader workers (PyTorch, 0 = in the main process)"
set ylabel "samples/s (log scale)"
set logscale y
set yrange [5000:*]
set format y "%.0s%c"
set xrange [-0.25:2.25]
set xtics ("0" 0, "1" 1, "2" 2)
set grid ytics mytics xtics
set key top left opaque box
set style data yerrorlines
plot dat index 0 using 1:2:3:4 lw 2 pt 7 lc rgb "#1f77b4" title "streamtrain zstd", \
     dat index 1 using 1:2:3:4 lw 2 pt 7 lc rgb "#2ca02c" title "streamtrain png", \
     dat index 2 using 1:2:3:4 lw 2 pt 7 lc rgb "#9467bd" title "streamtrain raw", \
     dat index 3 using 1:2:3:4 lw 2 dt 2 pt 5 lc rgb "#d62728" title "PyTorch PNG folder (PIL)", \
     dat index 4 using 1:2:3:4 lw 2 dt 2 pt 5 lc rgb "#ff7f0e" title "PyTorch TensorDataset"
