# bench/trainer.gp — the trainer plot of `make bench` (bench/report.py calls it).
# gnuplot -e "dat='trainer.dat'; out='x.png'; machine='...'" bench/trainer.gp
# dat columns: epoch, streamtrain loss, PyTorch loss, streamtrain test acc
# (median, min, max over seeds), PyTorch test acc (median, min, max).
set terminal pngcairo size 960,420 font "Sans,10"
set output out
set multiplot layout 1,2 title "MLP 784-512-256-10, SGD momentum 0.9, lr 0.05, batch 128 (median over seeds, bars min–max; ".machine.")"
set xlabel "epoch"
set xtics 1
set autoscale xfix
set offsets 0.3, 0.3, 0, 0
set grid
set key top right
set ylabel "training loss (epoch mean)"
plot dat using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "streamtrain", \
     dat using 1:3 with linespoints lw 2 dt 2 pt 5 lc rgb "#d62728" title "PyTorch"
set ylabel "test accuracy"
set key bottom right
plot dat using 1:4:5:6 with yerrorlines lw 2 pt 7 lc rgb "#1f77b4" title "streamtrain", \
     dat using 1:7:8:9 with yerrorlines lw 2 dt 2 pt 5 lc rgb "#d62728" title "PyTorch"
unset multiplot
