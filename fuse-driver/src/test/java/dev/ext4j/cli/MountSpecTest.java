package dev.ext4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.fs.AtimeMode;
import dev.ext4j.fs.ErrorPolicy;
import dev.ext4j.fs.MountOptions;
import dev.ext4j.io.Placement;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** The mount command line: every option of README.md's table, both calling conventions, and the errors. */
class MountSpecTest {
    private static MountSpec parse(String... args) throws MountSpec.UsageException {
        return MountSpec.parse(List.of(args));
    }

    private static MountSpec withOptions(String opts) throws MountSpec.UsageException {
        return parse("-o", opts, "disk.img", "mnt");
    }

    private static String usageError(String... args) {
        return assertThrows(MountSpec.UsageException.class, () -> MountSpec.parse(List.of(args))).getMessage();
    }

    @Test
    void noOptionsGiveTheDefaults() throws Exception {
        MountSpec s = parse("disk.img", "mnt");
        assertEquals(Path.of("disk.img"), s.image());
        assertEquals(Path.of("mnt"), s.mountPoint());
        assertFalse(s.foreground());
        assertFalse(s.readOnly());
        assertFalse(s.debug());
        assertEquals(List.of(), s.fuseOptions());
        assertNull(s.logFile());
        assertNull(s.errors());
        assertEquals(".ext4j-control", s.controlName());
        MountOptions o = s.coreOptions();
        MountOptions d = MountOptions.defaults();
        assertFalse(o.readOnly());
        assertNull(o.errors());
        assertEquals(d.cacheBytes(), o.cacheBytes());
        assertEquals(d.flushIntervalMillis(), o.flushIntervalMillis());
        assertEquals(d.dirtyExpireMillis(), o.dirtyExpireMillis());
        assertTrue(o.journal());
        assertEquals(MountSpec.DEFAULT_IDLE_FLUSH_MILLIS, o.idleFlushMillis());
    }

    @Test
    void roAndRwTheLastOneWins() throws Exception {
        assertTrue(withOptions("ro").readOnly());
        assertTrue(withOptions("ro").coreOptions().readOnly());
        assertFalse(withOptions("rw").readOnly());
        assertFalse(withOptions("ro,rw").readOnly());
        assertTrue(parse("-o", "rw", "-o", "ro", "disk.img", "mnt").readOnly());
    }

    @ParameterizedTest
    @ValueSource(strings = {"norecovery", "noload", "ro,norecovery", "norecovery,ro", "rw,ro,noload"})
    void norecoveryMountsReadOnly(String opts) throws Exception {
        MountSpec s = withOptions(opts);
        assertTrue(s.readOnly());
        assertTrue(s.coreOptions().readOnly());
        assertTrue(s.coreOptions().noRecovery());
        assertFalse(withOptions("ro").coreOptions().noRecovery());
    }

    @ParameterizedTest
    @ValueSource(strings = {"rw,norecovery", "norecovery,rw", "noload,rw"})
    void norecoveryWithRwIsRefused(String opts) {
        assertTrue(usageError("-o", opts, "disk.img", "mnt").contains("cannot be combined with rw"));
    }

    @Test
    void fakerootIsForTheMountingUserAlone() throws Exception {
        assertTrue(withOptions("fakeroot").fakeroot());
        assertFalse(withOptions("rw").fakeroot());
        for (String other : List.of("allow_other", "allow_root", "default_permissions")) {
            assertTrue(usageError("-o", "fakeroot," + other, "disk.img", "mnt").contains("fakeroot serves the mounting user alone"));
        }
    }

    /** Each option MountSpec accepts is in {@code ext4j help} and in README.md, and README.md names no other. */
    @Test
    void helpAndReadmeListEveryOption() throws Exception {
        String readme = java.nio.file.Files.readString(Path.of("..", "README.md"));
        for (String name : MountSpec.OPTION_NAMES) {
            assertTrue(java.util.regex.Pattern.compile("\\b" + name + "\\b").matcher(Main.USAGE).find(), name + " is not in ext4j help");
            assertTrue(readme.contains("`-o " + name) || readme.contains(" " + name + "`") || readme.contains("`" + name + "`"),
                    name + " is not in README.md's option table");
            withOptions(name.equals("ro") || name.equals("rw") || !needsValue(name) ? name : name + "=" + sampleValue(name));
        }
        var documented = java.util.regex.Pattern.compile("`-o ([a-z_]+)").matcher(readme);
        while (documented.find()) {
            assertTrue(MountSpec.OPTION_NAMES.contains(documented.group(1)), "README.md documents -o " + documented.group(1)
                    + ", which MountSpec does not accept");
        }
        for (String command : List.of("mount", "umount", "probe", "cp", "ls", "demo", "help")) {
            assertTrue(Main.USAGE.contains("ext4j " + command), command + " is not in ext4j help");
        }
    }

    private static boolean needsValue(String name) {
        return List.of("uid", "gid", "umask", "log", "errors", "control", "cache_size", "commit", "dirty_expire", "idle_flush", "journal",
                "offset", "partition", "transport").contains(name);
    }

    private static String sampleValue(String name) {
        return switch (name) {
            case "errors" -> "continue";
            case "journal" -> "on";
            case "log" -> "/tmp/x.log";
            case "control" -> "ctl";
            case "cache_size" -> "8M";
            case "transport" -> "libfuse2";
            default -> "1";
        };
    }

    @Test
    void fuseFlagsArePassedToLibfuse() throws Exception {
        assertEquals(List.of("allow_other", "default_permissions", "allow_root", "auto_unmount", "uid=5", "gid=6", "umask=022"),
                withOptions("allow_other,default_permissions,allow_root,auto_unmount,uid=5,gid=6,umask=022").fuseOptions());
    }

    @Test
    void debugByOptionOrFlag() throws Exception {
        assertTrue(withOptions("debug").debug());
        assertTrue(parse("-d", "disk.img", "mnt").debug());
    }

    @ParameterizedTest
    @CsvSource({"continue, CONTINUE", "remount-ro, REMOUNT_RO", "panic, PANIC"})
    void errors(String value, ErrorPolicy policy) throws Exception {
        MountSpec s = withOptions("errors=" + value);
        assertEquals(policy, s.errors());
        assertEquals(policy, s.coreOptions().errors());
    }

    @Test
    void cacheCommitDirtyExpireIdleFlushAndJournal() throws Exception {
        MountOptions o = withOptions("cache_size=64M,commit=2,dirty_expire=7,idle_flush=0,journal=off").coreOptions();
        assertEquals(64L << 20, o.cacheBytes());
        assertEquals(2000, o.flushIntervalMillis());
        assertEquals(7000, o.dirtyExpireMillis());
        assertEquals(0, o.idleFlushMillis());
        assertFalse(o.journal());
        assertTrue(withOptions("journal=on").coreOptions().journal());
        assertEquals(1L << 30, withOptions("cache_size=1g").coreOptions().cacheBytes());
        assertEquals(250, withOptions("idle_flush=250").coreOptions().idleFlushMillis());
    }

    @Test
    void logFileAndControlName() throws Exception {
        MountSpec s = withOptions("log=/tmp/ext4j.log,control=.ctl");
        assertEquals(Path.of("/tmp/ext4j.log"), s.logFile());
        assertEquals(".ctl", s.controlName());
    }

    @Test
    void offsetAndPartitionPlaceTheFilesystemInTheImage() throws Exception {
        assertEquals(Placement.WHOLE_IMAGE, withOptions("ro").coreOptions().placement());
        assertEquals(Placement.atOffset(1048576), withOptions("offset=1048576").coreOptions().placement());
        assertEquals(Placement.atOffset(1048576), withOptions("offset=1M").coreOptions().placement());
        assertEquals(Placement.ofPartition(5), withOptions("partition=5").coreOptions().placement());
        MountSpec s = withOptions("partition=2");
        assertEquals(s.coreOptions(), MountSpec.parse(s.childArgs().subList(1, s.childArgs().size())).coreOptions(), "passed to the child");
        assertTrue(usageError("-o", "partition=0", "disk.img", "mnt").startsWith("bad value in partition=0: partition numbers start at 1"));
        assertTrue(usageError("-o", "partition=x", "disk.img", "mnt").startsWith("bad value in partition=x"));
        assertTrue(usageError("-o", "offset=-1", "disk.img", "mnt").startsWith("bad value in offset=-1"));
        assertEquals("offset= and partition= exclude each other", usageError("-o", "offset=512,partition=1", "disk.img", "mnt"));
    }

    @Test
    void foregroundFlagAndTheOptionGluedToDashO() throws Exception {
        MountSpec s = parse("-f", "-oro,debug", "disk.img", "mnt");
        assertTrue(s.foreground());
        assertTrue(s.readOnly());
        assertTrue(s.debug());
    }

    /** mount(8) through mount.fuse: {@code ext4j IMAGE MOUNTPOINT -o OPTS}, with generic options to drop. */
    @Test
    void mountFuseConventionPutsTheOptionsLastAndAddsGenericOnes() throws Exception {
        MountSpec s = parse("/abs/disk.img", "/mnt/disk", "-o", "rw,noauto,nodev,nosuid,noexec,relatime,user,x-systemd.automount,comment=x,_netdev,ro");
        assertEquals(Path.of("/abs/disk.img"), s.image());
        assertEquals(Path.of("/mnt/disk"), s.mountPoint());
        assertTrue(s.readOnly());
        assertEquals(List.of(), s.fuseOptions());
        assertEquals(List.of("relatime"), s.tuning(), "kept for the core's atime flags");
        assertEquals(AtimeMode.RELATIME, s.atimeMode());
    }

    @Test
    void atimeFlagsAreReadAsTheKernelReadsThem() throws Exception {
        assertEquals(AtimeMode.RELATIME, withOptions("rw").atimeMode());
        assertEquals(AtimeMode.NOATIME, withOptions("strictatime,noatime").atimeMode());
        assertEquals(AtimeMode.STRICTATIME, withOptions("noatime,strictatime").atimeMode());
        assertEquals(AtimeMode.RELATIME, withOptions("noatime,atime").atimeMode());
        assertTrue(withOptions("nodiratime").noDirAtime());
        assertFalse(withOptions("nodiratime,diratime").noDirAtime());
        assertEquals(MountOptions.defaults().withReadOnly(false).cacheBytes(), withOptions("lazytime").coreOptions().cacheBytes());
    }

    /** mount.fuse run by root adds dev,suid unless nodev or nosuid was given: they reach libfuse, the last of each pair winning. */
    @Test
    void devAndSuidGoToLibfuse() throws Exception {
        assertEquals(List.of("dev", "suid"), withOptions("rw,dev,suid").fuseOptions());
        assertEquals(List.of("suid"), withOptions("dev,nodev,suid").fuseOptions());
        assertEquals(List.of("dev"), withOptions("nosuid,dev").fuseOptions());
    }

    @Test
    void childArgsRoundTrip() throws Exception {
        MountSpec s = withOptions("ro,allow_other,debug,errors=remount-ro,cache_size=8M,commit=3,control=ctl");
        roundTrip(s);
        roundTrip(withOptions("norecovery,fakeroot"));
    }

    private static void roundTrip(MountSpec s) throws Exception {
        List<String> child = s.childArgs();
        assertEquals(List.of("mount", "-f"), child.subList(0, 2));
        MountSpec again = MountSpec.parse(child.subList(1, child.size()));
        assertEquals(new MountSpec(s.image(), s.mountPoint(), true, s.readOnly(), s.debug(), s.fuseOptions(), null, s.errors(), s.tuning(),
                s.controlName(), s.fakeroot(), s.transport()), again);
        assertEquals(s.coreOptions(), again.coreOptions());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "errors=sometimes      | errors=sometimes: expected continue, remount-ro or panic",
            "cache_size=lots       | bad value in cache_size=lots",
            "cache_size=-1M        | bad value in cache_size=-1M",
            "cache_size=99999999T  | bad value in cache_size=99999999T",
            "commit=0              | bad value in commit=0: commit must be at least 1",
            "commit=soon           | bad value in commit=soon",
            "dirty_expire=-5       | bad value in dirty_expire=-5: dirty_expire must be at least 1",
            "idle_flush=x          | bad value in idle_flush=x",
            "journal=maybe         | bad value in journal=maybe: journal is on or off",
            "control=              | control=NAME needs a file name",
            "control=a/b           | control=NAME needs a file name",
            "control=..            | control=NAME needs a file name",
            "frobnicate            | unknown mount option frobnicate",
            "fsname=x              | unknown mount option fsname=x",
    })
    void badOptionsSayWhich(String opts, String message) {
        String m = usageError("-o", opts, "disk.img", "mnt");
        assertTrue(m.startsWith(message), m);
    }

    @ParameterizedTest
    @ValueSource(strings = {"-x", "--foreground"})
    void unknownFlags(String flag) {
        assertEquals("unknown flag " + flag, usageError(flag, "disk.img", "mnt"));
    }

    @Test
    void wrongArgumentCounts() {
        assertEquals("expected IMAGE and MOUNTPOINT, got 1 arguments", usageError("disk.img"));
        assertEquals("expected IMAGE and MOUNTPOINT, got 3 arguments", usageError("a", "b", "c"));
        assertEquals("-o needs an option list", usageError("disk.img", "mnt", "-o"));
    }
}
