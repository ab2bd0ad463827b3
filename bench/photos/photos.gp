# bench/photos/photos.gp — the photos plot of `make bench` (bench/report.py calls it).
# gnuplot -e "dat='photos.dat'; out='x.png'; machine='...'" bench/photos/photos.gp
# dat columns: 1 bar index, 2 label (quoted), 3-5 images/s per core
# (median, min, max) for random-resized-crop 224 + flip, 6 the colour
# (1 streamtrain, 2 torchvision, 3 FFCV, 4 DALI).
set terminal pngcairo size 900,520 font "Sans,10"
set output out
set title "Photos: random-resized-crop 224 + flip into uint8 batches of 256\nimages/s per core (loader threads or workers), median of 3 runs, bars min–max; ".machine
set ylabel "images/s per core"
set yrange [0:*]
set grid ytics
set style fill solid 0.6 border -1
set xrange [-0.6:*]
set offsets 0, 0.6, graph 0.1, 0
set xtics rotate by -25 left nomirror
set bmargin 7
set key off
set linetype 1 lc rgb "#1f77b4"
set linetype 2 lc rgb "#d62728"
set linetype 3 lc rgb "#ff7f0e"
set linetype 4 lc rgb "#2ca02c"
plot dat using 1:3:4:5:(0.3):6:xtic(2) with boxerrorbars lc variable, \
     dat using 1:5:(sprintf("%.0f", $3)) with labels offset 0,0.8
