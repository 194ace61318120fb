#!/usr/bin/perl
# packaging.pl — checks that the release metadata agree with each other:
# META.json (PGXN meta-spec 1.0.0), pg_infer.control, the install script and
# the library's compiled-in version.  Prints TAP.
use strict;
use warnings;
use JSON::PP;

my $n = 0;
my $failed = 0;
sub check {
    my ($ok, $what) = @_;
    $n++;
    $failed++ unless $ok;
    print(($ok ? "ok" : "not ok") . " $n - $what\n");
}
sub slurp { my ($f) = @_; open(my $fh, '<', $f) or return undef; local $/; return <$fh>; }

my $control = slurp('pg_infer.control') // '';
my ($control_version) = $control =~ /^default_version\s*=\s*'([^']+)'/m;
check(defined $control_version, "pg_infer.control has a default_version");
$control_version //= '';

my $meta = eval { decode_json(slurp('META.json') // '') };
check(ref $meta eq 'HASH', "META.json is a JSON object");
$meta = {} unless ref $meta eq 'HASH';

for my $key (qw(name abstract version maintainer license provides meta-spec)) {
    check(defined $meta->{$key}, "META.json has the required key $key");
}
check(($meta->{'meta-spec'}{version} // '') eq '1.0.0', "META.json follows meta-spec 1.0.0");
check(($meta->{name} // '') eq 'pg_infer', "META.json names the distribution pg_infer");
check(($meta->{version} // '') =~ /^\d+\.\d+\.\d+$/, "META.json version is a semantic version");
check(($meta->{version} // '') eq $control_version,
      "META.json version equals pg_infer.control default_version ($control_version)");
my $provided = $meta->{provides}{pg_infer} // {};
check(($provided->{version} // '') eq $control_version, "META.json provides pg_infer $control_version");
check(defined $provided->{file} && -f $provided->{file}, "the file META.json provides exists");
check(($meta->{prereqs}{runtime}{requires}{PostgreSQL} // '') eq '15.0.0',
      "META.json requires PostgreSQL 15.0.0 at run time");
# The install is a chain: ext/sql/<version>/ for the first version and for
# each upgrade step, the last of which is the control file's version.
opendir(my $dh, 'ext/sql') or die "ext/sql: $!";
my @versions = sort grep { /^\d+\.\d+\.\d+$/ && -d "ext/sql/$_" } readdir($dh);
closedir($dh);
check(@versions && $versions[-1] eq $control_version,
      "the newest of ext/sql/<version>/ (@versions) is the control file's version");
for my $v (@versions) {
    my @parts = glob("ext/sql/$v/*.sql");
    check(@parts > 0, "ext/sql/$v/ holds the script parts of $v");
}

my $header = slurp('ext/pg_infer.h') // '';
my ($library_version) = $header =~ /#define\s+PG_INFER_LIBRARY_VERSION\s+"([^"]+)"/;
check(($library_version // '') eq $control_version,
      "the library version (ext/pg_infer.h) equals the control file's");

print "1..$n\n";
exit($failed ? 1 : 0);
