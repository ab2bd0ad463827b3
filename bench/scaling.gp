# bench/scaling.gp — the scaling plot of `make bench` (bench/report.py calls it).
# gnuplot -e "dat='scaling.dat'; out='x.png'; machine='...'" bench/scaling.gp
# dat columns: 1 pack GiB (decoded); µs per sample per thread as (median,
# min, max): 2-4 warm 1 thread, 5-7 warm 2 threads, 8-10 cold 2 threads
# with read-ahead, 11-13 cold 2 threads without (nan when not run); 14-15
# peak RSS MiB with 1 and 2 threads; 16 the pack index in memory, MiB;
# 17 the size label.
set terminal pngcairo size 1000,480 font "Sans,10"
set output out
set multiplot layout 1,2 title "Loader vs pack size: 64×64×3 zstd, global shuffle, pread, batch 256 (median of 3, bars min–max; ".machine.")"
set xlabel "pack size, decoded (log scale)"
set logscale x 2
set offsets graph 0.06, graph 0.06, 0, 0
set grid
set key below maxrows 2 width -4
set ylabel "µs per sample per thread"
set yrange [0:*]
plot dat using 1:2:3:4:xtic(17) with yerrorlines lw 2 pt 7 lc rgb "#1f77b4" title "warm, 1 thread", \
     dat using 1:5:6:7 with yerrorlines lw 2 pt 7 lc rgb "#2ca02c" title "warm, 2 threads", \
     dat using 1:8:9:10 with yerrorlines lw 2 dt 2 pt 5 lc rgb "#7f7f7f" title "cold, 2 threads, read-ahead 4", \
     dat using 1:11:12:13 with yerrorlines lw 2 dt 3 pt 4 lc rgb "#d62728" title "cold, 2 threads, no read-ahead"
set ylabel "peak RSS (MiB)"
plot dat using 1:14:xtic(17) with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "1 thread", \
     dat using 1:15 with linespoints lw 2 pt 7 lc rgb "#2ca02c" title "2 threads", \
     dat using 1:($14-$16) with linespoints lw 2 dt 2 pt 6 lc rgb "#1f77b4" title "1 thread, less the index", \
     dat using 1:($15-$16) with linespoints lw 2 dt 2 pt 6 lc rgb "#2ca02c" title "2 threads, less the index", \
     dat using 1:16 with linespoints lw 2 dt 3 pt 5 lc rgb "#7f7f7f" title "the pack index (24 B/record)"
unset multiplot
