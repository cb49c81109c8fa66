package dev.ext4j.nio;

import java.net.URI;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.ProviderMismatchException;
import java.nio.file.WatchEvent;
import java.nio.file.WatchKey;
import java.nio.file.WatchService;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A path inside an ext4 image: '/'-separated names as in the image, absolute from the image's root
 * or relative (to the root, when used). Names are the image's bytes in UTF-8. Immutable.
 */
public final class ImagePath implements Path {
    private final ImageFileSystem fs;
    private final boolean absolute;
    private final String[] names;

    ImagePath(ImageFileSystem fs, boolean absolute, String[] names) {
        this.fs = fs;
        this.absolute = absolute;
        this.names = names;
    }

    /** Parses {@code first} and {@code more} joined by '/'; empty names (double slashes) drop out. */
    static ImagePath parse(ImageFileSystem fs, String first, String... more) {
        StringBuilder b = new StringBuilder(first);
        for (String m : more) {
            if (!m.isEmpty()) {
                b.append('/').append(m);
            }
        }
        String s = b.toString();
        if (s.indexOf('\0') >= 0) {
            throw new java.nio.file.InvalidPathException(s, "NUL character in a path");
        }
        String[] parts = Arrays.stream(s.split("/")).filter(p -> !p.isEmpty()).toArray(String[]::new);
        return new ImagePath(fs, s.startsWith("/"), parts);
    }

    /** The names from the root, for the walk in {@link ImageFileSystem}. */
    String[] names() {
        return absolute ? names : toAbsolutePath().names;
    }

    private static ImagePath check(Path p) {
        if (!(p instanceof ImagePath ip)) {
            throw new ProviderMismatchException("not an ext4 image path: " + p);
        }
        return ip;
    }

    @Override
    public ImageFileSystem getFileSystem() {
        return fs;
    }

    @Override
    public boolean isAbsolute() {
        return absolute;
    }

    @Override
    public ImagePath getRoot() {
        return absolute ? new ImagePath(fs, true, new String[0]) : null;
    }

    @Override
    public ImagePath getFileName() {
        return names.length == 0 ? null : new ImagePath(fs, false, new String[] {names[names.length - 1]});
    }

    @Override
    public ImagePath getParent() {
        if (names.length == 0 || (names.length == 1 && !absolute)) {
            return names.length == 1 ? null : getRoot();
        }
        return new ImagePath(fs, absolute, Arrays.copyOf(names, names.length - 1));
    }

    @Override
    public int getNameCount() {
        return names.length;
    }

    @Override
    public ImagePath getName(int index) {
        return subpath(index, index + 1);
    }

    @Override
    public ImagePath subpath(int beginIndex, int endIndex) {
        if (beginIndex < 0 || endIndex > names.length || beginIndex >= endIndex) {
            throw new IllegalArgumentException("subpath " + beginIndex + ".." + endIndex + " of " + this);
        }
        return new ImagePath(fs, false, Arrays.copyOfRange(names, beginIndex, endIndex));
    }

    @Override
    public boolean startsWith(Path other) {
        ImagePath o = check(other);
        if (o.absolute != absolute || o.names.length > names.length) {
            return false;
        }
        return Arrays.equals(names, 0, o.names.length, o.names, 0, o.names.length);
    }

    @Override
    public boolean endsWith(Path other) {
        ImagePath o = check(other);
        if (o.absolute) {
            return equals(o);
        }
        int off = names.length - o.names.length;
        return off >= 0 && Arrays.equals(names, off, names.length, o.names, 0, o.names.length);
    }

    @Override
    public ImagePath normalize() {
        List<String> out = new ArrayList<>();
        for (String n : names) {
            if (n.equals(".")) {
                continue;
            }
            if (n.equals("..") && !out.isEmpty() && !out.get(out.size() - 1).equals("..")) {
                out.remove(out.size() - 1);
            } else if (!(n.equals("..") && absolute)) {
                out.add(n);
            }
        }
        return new ImagePath(fs, absolute, out.toArray(String[]::new));
    }

    @Override
    public ImagePath resolve(Path other) {
        ImagePath o = check(other);
        if (o.absolute) {
            return o;
        }
        String[] joined = Arrays.copyOf(names, names.length + o.names.length);
        System.arraycopy(o.names, 0, joined, names.length, o.names.length);
        return new ImagePath(fs, absolute, joined);
    }

    @Override
    public ImagePath relativize(Path other) {
        ImagePath o = check(other);
        if (o.absolute != absolute) {
            throw new IllegalArgumentException("one of " + this + " and " + o + " is absolute, the other is not");
        }
        int common = 0;
        while (common < names.length && common < o.names.length && names[common].equals(o.names[common])) {
            common++;
        }
        List<String> out = new ArrayList<>();
        for (int i = common; i < names.length; i++) {
            out.add("..");
        }
        out.addAll(Arrays.asList(o.names).subList(common, o.names.length));
        return new ImagePath(fs, false, out.toArray(String[]::new));
    }

    /** {@code ext4:file:///path/disk.img!/dir/file}, as zipfs's {@code jar:} URIs. */
    @Override
    public URI toUri() {
        try {
            String path = new URI(null, null, toAbsolutePath().toString(), null).getRawPath().replace("!", "%21");
            return URI.create(Ext4FileSystemProvider.SCHEME + ":" + fs.image().toUri() + "!" + path);
        } catch (java.net.URISyntaxException e) {
            throw new IllegalStateException("path " + this + " makes no URI", e);
        }
    }

    @Override
    public ImagePath toAbsolutePath() {
        return absolute ? this : new ImagePath(fs, true, names);
    }

    @Override
    public ImagePath toRealPath(LinkOption... options) throws java.io.IOException {
        return fs.realPath(this, !Ext4FileSystemProvider.noFollow(options));
    }

    @Override
    public WatchKey register(WatchService watcher, WatchEvent.Kind<?>[] events, WatchEvent.Modifier... modifiers) {
        throw new UnsupportedOperationException("ext4 images have no watch service");
    }

    @Override
    public int compareTo(Path other) {
        return toString().compareTo(check(other).toString());
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ImagePath p && p.fs == fs && p.absolute == absolute && Arrays.equals(p.names, names);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(names) * 31 + (absolute ? 1 : 0);
    }

    @Override
    public String toString() {
        String s = String.join("/", names);
        return absolute ? "/" + s : s;
    }
}
