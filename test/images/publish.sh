# Sourced by the test-image builders (build-kernel-guest.sh, ../registry/build-oci-images.sh).
#
# publish_dir SRC OUTDIR NAME WORK
#   Moves the finished build SRC to a fresh OUTDIR/.NAME.XXXXXX and points the symlink
#   OUTDIR/NAME at it with one rename, so a reader sees the old build or the new one, never half
#   of either; then removes older builds. A real directory left at OUTDIR/NAME by an older layout
#   is moved into WORK (removed with it). Sets PUBLISHED to the new build's directory.
publish_dir() {
  local src=$1 outdir=$2 name=$3 work=$4
  local dest=$outdir/$name final d
  final=$(mktemp -d "$outdir/.$name.XXXXXX")
  rmdir "$final"
  mv "$src" "$final"
  if [[ -e $dest && ! -L $dest ]]; then mv "$dest" "$work/old-dest"; fi
  ln -s "${final##*/}" "$outdir/.$name.link.$$"
  mv -T "$outdir/.$name.link.$$" "$dest"
  for d in "$outdir/.$name".*; do
    [[ $d == "$final" ]] || rm -rf "$d"
  done
  PUBLISHED=$final
}
