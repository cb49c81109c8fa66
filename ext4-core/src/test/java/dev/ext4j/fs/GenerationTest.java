package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.testutil.Images;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link FileAttributes#generation()} is i_generation, as debugfs shows it, for inodes mkfs made and ext4j made. */
class GenerationTest {
    @TempDir
    Path work;

    private static long debugfsGeneration(Path img, String path) {
        Matcher m = Pattern.compile("Generation: (\\d+)").matcher(Images.stat(img, path));
        assertTrue(m.find(), "debugfs shows a generation for " + path);
        return Long.parseLong(m.group(1));
    }

    @Test
    void generationIsTheInodesIGeneration() throws Exception {
        Path src = Files.createDirectories(work.resolve("src"));
        Files.writeString(src.resolve("f"), "f");
        Path img = Images.mkfs(work.resolve("gen.img"), "16M", List.of(), src);
        Images.debugfs(img, "sif /f generation 0xfedcba98");
        long made;
        long generation;
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            long f = fs.lookup(Ext4FileSystem.ROOT_INO, "f".getBytes(StandardCharsets.UTF_8));
            assertEquals(0xfedcba98L, fs.stat(f).generation(), "unsigned, all 32 bits");
            made = fs.mknod(Ext4FileSystem.ROOT_INO, "new".getBytes(StandardCharsets.UTF_8), 0100644, 0, 0, 0, 0);
            generation = fs.stat(made).generation();
        }
        Images.assertClean(img);
        assertEquals(debugfsGeneration(img, "/new"), generation);
    }
}
