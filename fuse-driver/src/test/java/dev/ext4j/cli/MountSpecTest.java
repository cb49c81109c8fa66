package dev.ext4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.fs.ErrorPolicy;
import dev.ext4j.fs.MountOptions;
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
        assertEquals(List.of("relatime"), s.tuning(), "the atime flag is kept (the default)");
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
        List<String> child = s.childArgs();
        assertEquals(List.of("mount", "-f"), child.subList(0, 2));
        MountSpec again = MountSpec.parse(child.subList(1, child.size()));
        assertEquals(new MountSpec(s.image(), s.mountPoint(), true, s.readOnly(), s.debug(), s.fuseOptions(), null, s.errors(), s.tuning(),
                s.controlName()), again);
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
