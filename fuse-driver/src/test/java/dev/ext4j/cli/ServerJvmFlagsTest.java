package dev.ext4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The flags a mount's serving JVM starts with ({@link Daemon#childJvmArgs}), and that a JVM takes them. */
class ServerJvmFlagsTest {
    private static final List<String> DEFAULTS = List.of("-XX:TieredStopAtLevel=1", "-XX:+UseParallelGC", "-Xmx1g", "-Xmn32m",
            "-XX:MaxDirectMemorySize=1t");

    @Test
    void aPlainJavaDashJarMountServesWithTheLaunchersFlags() throws Exception {
        List<String> child = Daemon.childJvmArgs(List.of());
        assertEquals(DEFAULTS, child);
        assertStarts(child);
    }

    @Test
    void theLaunchersOwnFlagsAreNotDoubled() {
        List<String> launcher = List.of("-XX:TieredStopAtLevel=1", "-XX:+UseParallelGC", "-Xmx1g", "-Xmn32m", "-XX:MaxDirectMemorySize=1t",
                "-XX:SharedArchiveFile=/x/ext4j-cp.jsa", "-Dfile.encoding=ISO-8859-1");
        assertEquals(launcher, Daemon.childJvmArgs(launcher));
    }

    @Test
    void whatTheUserChoseWinsAndOnlyTheRestIsAdded() throws Exception {
        List<String> user = List.of("-XX:+UseG1GC", "-Xmx512m", "-XX:NewRatio=3", "-Dext4j.x=1", "-javaagent:/nothing.jar");
        List<String> child = Daemon.childJvmArgs(user);
        assertEquals(List.of("-XX:TieredStopAtLevel=1", "-XX:MaxDirectMemorySize=1t", "-XX:+UseG1GC", "-Xmx512m", "-XX:NewRatio=3",
                "-Dext4j.x=1"), child);
        assertStarts(child); // one collector only: a second would stop the JVM
        assertEquals(List.of("-XX:MaxDirectMemorySize=1t", "-XX:-TieredCompilation", "-XX:+UseSerialGC", "-Xmx2g", "-Xmn8m"),
                Daemon.childJvmArgs(List.of("-XX:-TieredCompilation", "-XX:+UseSerialGC", "-Xmx2g", "-Xmn8m")));
    }

    /** A JVM with these flags starts: {@code java FLAGS -version} exits 0. */
    private static void assertStarts(List<String> flags) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.addAll(flags);
        cmd.add("-version");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        }
        assertEquals(0, p.exitValue(), cmd + ": " + out);
    }
}
