#!/usr/bin/perl
# cuda_emu_rewrite.pl IN OUT — rewrites one CUDA source (.cu or .cuh) into
# C++ for the CPU emulator (test/gpu/emu/README.md).  Only syntax g++ cannot
# parse is touched; line numbers are kept (#line maps diagnostics back):
#   kernel<tmpl><<<grid, block[, shared[, stream]]>>>(args)
#       -> ::pgi_emu::launch("kernel<tmpl>", grid, block, shared, stream, kernel<tmpl>, args)
#   extern __shared__ T name[];      -> T *name = (T *) ::pgi_emu::dynamic_shared();
#   __shared__ T name[N];            -> a reference to a per-block buffer (garbage at start)
#   __launch_bounds__(N) on a kernel -> a check of the block size at its start
#   #pragma unroll                   -> removed (GCC has no such pragma)
use strict;
use warnings;

my ($in, $out) = @ARGV;
die "usage: $0 IN OUT\n" unless defined $out;
open my $fh, '<', $in or die "$in: $!\n";
my $src = do { local $/; <$fh> };
close $fh;

# Split at top-level commas (parentheses, brackets, braces; not <>, which
# also appear as operators such as ->).
sub split_top {
    my ($text) = @_;
    my @parts;
    my ($depth, $start) = (0, 0);
    for my $i (0 .. length($text) - 1) {
        my $c = substr($text, $i, 1);
        if ($c =~ /[\(\[\{]/) { $depth++ }
        elsif ($c =~ /[\)\]\}]/) { $depth-- }
        elsif ($c eq ',' && $depth == 0) {
            push @parts, substr($text, $start, $i - $start);
            $start = $i + 1;
        }
    }
    push @parts, substr($text, $start);
    s/^\s+|\s+$//g for @parts;
    return @parts;
}

sub matching_paren {
    my ($text, $open) = @_;
    my $depth = 0;
    for my $i ($open .. length($text) - 1) {
        my $c = substr($text, $i, 1);
        $depth++ if $c eq '(';
        $depth-- if $c eq ')';
        return $i if $depth == 0;
    }
    die "$in: unbalanced parentheses\n";
}

# 1. #pragma unroll
$src =~ s/^([ \t]*)#[ \t]*pragma[ \t]+unroll\b[^\n]*$/$1/mg;

# 2. dynamic shared memory
$src =~ s{extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w\s:]*?)\s*(?:__align__\s*\(\s*\d+\s*\)\s*)?\b(\w+)\s*\[\s*\]\s*;}
         {$1 *$2 = ($1 *) ::pgi_emu::dynamic_shared();}g;

# 2b. static shared memory in a function: a per-block buffer that starts
# as garbage (0xff bytes) in every block, like the hardware's
$src =~ s{(?<![\w.])__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:]*(?:\s*<[^;<>]*>)?(?:\s+(?:unsigned|int|long|short|char|float|double))*)\s+(\w+)\s*((?:\[[^\];]+\]\s*)*);}
         { my ($type, $name, $dims) = ($1, $2, $3);
           $dims =~ s/\s+$//;
           $dims eq ''
             ? "static char pgi_emu_key_$name; $type &$name = *($type *) ::pgi_emu::static_shared(&pgi_emu_key_$name, sizeof($type));"
             : "static char pgi_emu_key_$name; $type (&$name)$dims = *($type (*)$dims) ::pgi_emu::static_shared(&pgi_emu_key_$name, sizeof($type $dims));" }ge;

# 3. __launch_bounds__
while ($src =~ /__launch_bounds__\s*\(/) {
    my $start = $-[0];
    my $open = $+[0] - 1;
    my $close = matching_paren($src, $open);
    my ($max_threads) = split_top(substr($src, $open + 1, $close - $open - 1));
    my $brace = index($src, '{', $close);
    die "$in: no body after __launch_bounds__\n" if $brace < 0;
    substr($src, $brace + 1, 0) = " PGI_EMU_LAUNCH_BOUNDS($max_threads);";
    (my $newlines = substr($src, $start, $close + 1 - $start)) =~ tr/\n//cd;
    substr($src, $start, $close + 1 - $start) = $newlines;
}

# 4. launches
my $pos = 0;
while ((my $lt = index($src, '<<<', $pos)) >= 0) {
    # the kernel: identifiers, ::, and balanced <...> before <<<
    my $b = $lt;
    while ($b > 0) {
        my $c = substr($src, $b - 1, 1);
        if ($c =~ /[\w:]/) { $b--; next }
        if ($c eq '>') {
            my ($depth, $i) = (0, $b - 1);
            for (; $i >= 0; $i--) {
                my $d = substr($src, $i, 1);
                $depth++ if $d eq '>';
                $depth-- if $d eq '<';
                last if $depth == 0;
            }
            die "$in: unbalanced template arguments before <<<\n" if $i < 0;
            $b = $i;
            next;
        }
        last;
    }
    my $kernel = substr($src, $b, $lt - $b);
    die "$in: no kernel name before <<<\n" if $kernel !~ /\w/;
    # the configuration, up to the >>> at depth 0
    my ($depth, $i) = (0, $lt + 3);
    for (; $i < length $src; $i++) {
        my $c = substr($src, $i, 1);
        if ($c =~ /[\(\[\{]/) { $depth++ }
        elsif ($c =~ /[\)\]\}]/) { $depth-- }
        elsif ($depth == 0 && substr($src, $i, 3) eq '>>>') { last }
    }
    die "$in: no >>> after <<<\n" if $i >= length $src;
    my @config = split_top(substr($src, $lt + 3, $i - $lt - 3));
    die "$in: launch of $kernel needs 2 to 4 configuration values\n" if @config < 2 || @config > 4;
    push @config, '0' while @config < 4;
    pos($src) = $i + 3;
    die "$in: no argument list after the launch of $kernel\n" unless $src =~ /\G\s*\(/gc;
    my $end = $+[0];
    # one more ) closes the launch after the argument list
    substr($src, matching_paren($src, $end - 1) + 1, 0) = ')';
    (my $label = $kernel) =~ s/\s+/ /g;
    my $call = "::pgi_emu::launch(\"$label\", " . join(', ', @config) .
               ", $kernel, ::pgi_emu::args_of($kernel)(";
    (my $newlines = substr($src, $b, $end - $b)) =~ tr/\n//cd;
    substr($src, $b, $end - $b) = $call . $newlines;
    $pos = $b + length($call);
}

(my $shown = $in) =~ s/"/\\"/g;
my $prefix = $in =~ /\.cu$/ ? "#include <cuda_runtime.h>\n" : '';
open my $oh, '>', "$out.tmp" or die "$out: $!\n";
print $oh $prefix, "#line 1 \"$shown\"\n", $src;
close $oh or die "$out: $!\n";
rename "$out.tmp", $out or die "$out: $!\n";
