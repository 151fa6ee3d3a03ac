#!/usr/bin/env bash
# Writes a small image folder for `finetune_resnet --data folder:DIR` from Debian's Fashion-MNIST files:
# DIR/{train,val}/<class>/NNNNN.pgm (28x28 grey PGM, which stb_image decodes), PER_CLASS train and PER_CLASS/2
# val images for each of four classes, named so that sorted order gives labels 0 trouser, 1 pullover, 2 bag,
# 3 ankle boot (the job's source task is the first two, its target task the last two). Uses perl (perl-base is
# part of every Debian system).
# usage: make_image_folder.sh DIR [PER_CLASS=150] [FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist]
set -euo pipefail
out=$1
per_class=${2:-150}
src=${3:-/usr/share/datasets/fashion-mnist}
rm -rf "$out"
# write_split PREFIX SPLIT COUNT: the first COUNT images of each class in PREFIX-images/labels -> $out/SPLIT
write_split() {
  perl -e '
    use strict; use warnings;
    my ($images, $labels, $dir, $count) = @ARGV;
    my %names = (1 => "0_trouser", 2 => "1_pullover", 8 => "2_bag", 9 => "3_ankle_boot");
    local $/;
    open(my $li, "-|", "gzip", "-dc", $labels) or die "cannot read $labels\n"; binmode $li;
    my $l = <$li>; close $li;
    open(my $im, "-|", "gzip", "-dc", $images) or die "cannot read $images\n"; binmode $im;
    my $m = <$im>; close $im;
    my %seen;
    for my $i (0 .. length($l) - 9) {
      my $label = ord(substr($l, 8 + $i, 1));
      next unless exists $names{$label} && ($seen{$label}++ // 0) < $count;
      my $folder = "$dir/$names{$label}";
      mkdir $dir; mkdir $folder;
      open(my $f, ">", sprintf("%s/%05d.pgm", $folder, $i)) or die "cannot write in $folder\n"; binmode $f;
      print $f "P5\n28 28\n255\n", substr($m, 16 + 784 * $i, 784);
      close $f;
    }' "$src/$1-images-idx3-ubyte.gz" "$src/$1-labels-idx1-ubyte.gz" "$out/$2" "$3"
}
mkdir -p "$out"
write_split train train "$per_class"
write_split t10k val $(( per_class / 2 ))
echo "image folder: $(find "$out/train" -name '*.pgm' | wc -l) train and $(find "$out/val" -name '*.pgm' | wc -l) val images in $out"
