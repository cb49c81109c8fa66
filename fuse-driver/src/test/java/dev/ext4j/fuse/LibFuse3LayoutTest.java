package dev.ext4j.fuse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every struct offset, size and flag {@link LibFuse3} binds equals what the installed
 * {@code fuse_lowlevel.h} says: a C program (layout3.c) prints them, compiled here with gcc against
 * libfuse3-dev, and each constant of LibFuse3 must appear in its output with the same value.
 */
class LibFuse3LayoutTest {

    @Test
    void everyConstantMatchesTheInstalledHeaders(@TempDir Path dir) throws Exception {
        Map<String, Long> c = headerValues(dir);
        Map<String, Long> java = new TreeMap<>();
        for (Field f : LibFuse3.class.getFields()) {
            if (Modifier.isStatic(f.getModifiers()) && f.getType() == int.class) {
                java.put(f.getName(), (long) f.getInt(null));
            }
        }
        assertTrue(java.size() > 80, "LibFuse3's constants were found: " + java.keySet());
        for (Map.Entry<String, Long> e : java.entrySet()) {
            assertTrue(c.containsKey(e.getKey()), e.getKey() + " is bound but not checked by layout3.c");
            assertEquals(c.get(e.getKey()), e.getValue(), e.getKey() + " in the installed fuse_lowlevel.h");
        }
    }

    /** layout3.c's output: NAME VALUE per line, names upper-cased. */
    private static Map<String, Long> headerValues(Path dir) throws Exception {
        Path src = dir.resolve("layout3.c");
        try (InputStream in = LibFuse3LayoutTest.class.getResourceAsStream("layout3.c")) {
            Files.copy(in, src);
        }
        Path exe = dir.resolve("layout3");
        run(dir, "gcc", "-Wall", "-I/usr/include/fuse3", src.toString(), "-o", exe.toString());
        String out = run(dir, exe.toString());
        Map<String, Long> values = new TreeMap<>();
        for (String line : out.split("\n")) {
            String[] w = line.trim().split(" ");
            values.put(w[0].toUpperCase(Locale.ROOT), Long.parseLong(w[1]));
        }
        return values;
    }

    private static String run(Path dir, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd) + " did not finish");
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + " failed (gcc and libfuse3-dev are needed; bin/test installs"
                + " them):\n" + out);
        return out;
    }
}
