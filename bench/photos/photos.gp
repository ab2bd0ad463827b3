# bench/photos/photos.gp — the photos plot of `make bench` (bench/report.py calls it).
# gnuplot -e "dat='photos.dat'; out='x.png'; machine='...'" bench/photos/photos.gp
# dat columns: 1 bar index, 2 label (quoted), 3-5 images/s per core
# (median, min, max) for random-resized-crop 224 + flip.
set terminal pngcairo size 900,520 font "Sans,10"
set output out
set title "Photos: random-resized-crop 224 + flip into uint8 batches of 256\nimages/s per core (loader threads or workers), median of 3 runs, bars min–max; ".machine
set ylabel "images/s per core"
set yrange [0:*]
set grid ytics
set style fill solid 0.6 border -1
set boxwidth 0.6
set xtics rotate by -25 left nomirror
set bmargin 7
set key off
plot dat using 1:3:4:5:xtic(2) with boxerrorbars lc rgb "#1f77b4", \
     dat using 1:5:(sprintf("%.0f", $3)) with labels offset 0,0.8
